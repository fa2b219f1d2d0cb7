import { defineConfig } from "vite";
import solid from "vite-plugin-solid";

// The hub serves the built files itself (embedded in its binary); `npm run dev` proxies the API
// to a hub on 127.0.0.1:8000.
export default defineConfig({
  plugins: [solid()],
  build: { outDir: "dist", target: "es2022", chunkSizeWarningLimit: 400 },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8000",
      "/ws": { target: "ws://127.0.0.1:8000", ws: true },
    },
  },
});
