// After `vite build`: puts Swagger UI (from the swagger-ui-dist package) into dist/docs, with a
// page that opens the hub's own OpenAPI document. The hub serves it at /docs, from its binary.
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";

const from = "node_modules/swagger-ui-dist";
const to = "dist/docs";
mkdirSync(to, { recursive: true });
for (const f of ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"]) {
  copyFileSync(`${from}/${f}`, `${to}/${f}`);
}
// No inline script: the hub's content security policy allows scripts from its own origin only.
writeFileSync(
  `${to}/init.js`,
  `window.ui = SwaggerUIBundle({ url: "/api/v1/openapi.json", dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: false });\n`,
);
writeFileSync(
  `${to}/index.html`,
  `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>gatewatch API</title>
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href="/docs/swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js"></script>
    <script src="/docs/init.js"></script>
  </body>
</html>
`,
);
