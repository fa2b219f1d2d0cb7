// A hash router (`#/devices/<id>?tab=flows`): the hub serves one page at `/` and every route
// survives a reload.
import { createSignal } from "solid-js";

const [hash, setHash] = createSignal(location.hash || "#/");
window.addEventListener("hashchange", () => setHash(location.hash || "#/"));

export { hash };

/** The route's path parts: `#/devices/abc` → ["devices", "abc"]. */
export function route(): string[] {
  return hash().replace(/^#\/?/, "").split("?")[0].split("/").filter(Boolean);
}

export function go(path: string) {
  location.hash = "#" + path;
}
