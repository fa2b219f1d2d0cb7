// The console's shell: sign-in gate, navigation, and which page each route shows.
import { createSignal, For, JSX, Match, onCleanup, onMount, Show, Switch } from "solid-js";
import { render } from "solid-js/web";
import { can, logout, resume, Role, user } from "./api";
import { go, hash, route } from "./router";
import "./style.css";
import Login from "./pages/login";
import ChangePassword from "./pages/password";
import Dashboard from "./pages/dashboard";
import Devices from "./pages/devices";
import DeviceDetail from "./pages/device";
import Live from "./pages/live";
import Alerts from "./pages/alerts";
import Attacks from "./pages/attacks";
import Prevention from "./pages/prevention";
import Federated from "./pages/fl";
import Settings from "./pages/settings";

interface NavItem {
  path: string;
  label: string;
  min: Role;
}
const NAV: NavItem[] = [
  { path: "", label: "Dashboard", min: "viewer" },
  { path: "devices", label: "Devices", min: "viewer" },
  { path: "live", label: "Live monitor", min: "viewer" },
  { path: "alerts", label: "Alerts", min: "viewer" },
  { path: "attacks", label: "Attack simulation", min: "viewer" },
  { path: "prevention", label: "Prevention", min: "viewer" },
  { path: "fl", label: "Federated learning", min: "viewer" },
  { path: "settings", label: "Settings & fleet", min: "viewer" },
];

function Shell(props: { children: JSX.Element }) {
  const current = () => route()[0] ?? "";
  const [menuOpen, setMenuOpen] = createSignal(false);
  return (
    <div class="shell">
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <header class="top">
        <button class="menu" aria-expanded={menuOpen()} aria-controls="nav" onClick={() => setMenuOpen(!menuOpen())}>
          Menu
        </button>
        <strong class="brand">gatewatch</strong>
        <span class="who">
          {user()?.username} <Show when={user()}>({user()?.role})</Show>
        </span>
        <button class="secondary" onClick={() => logout().then(() => go("/"))}>
          Sign out
        </button>
      </header>
      <nav id="nav" aria-label="Main" classList={{ open: menuOpen() }}>
        <ul>
          <For each={NAV.filter((n) => can(n.min))}>
            {(n) => (
              <li>
                <a href={"#/" + n.path} aria-current={current() === n.path ? "page" : undefined} onClick={() => setMenuOpen(false)}>
                  {n.label}
                </a>
              </li>
            )}
          </For>
        </ul>
      </nav>
      <main id="main" tabindex="-1">
        {props.children}
      </main>
    </div>
  );
}

function Router() {
  return (
    <Switch fallback={<NotFound />}>
      <Match when={route().length === 0}>
        <Dashboard />
      </Match>
      <Match when={route()[0] === "devices" && route().length === 1}>
        <Devices />
      </Match>
      <Match when={route()[0] === "devices" && route()[1]}>
        {(id) => <DeviceDetail id={id()} />}
      </Match>
      <Match when={route()[0] === "live"}>
        <Live />
      </Match>
      <Match when={route()[0] === "alerts"}>
        <Alerts />
      </Match>
      <Match when={route()[0] === "attacks"}>
        <Attacks />
      </Match>
      <Match when={route()[0] === "prevention"}>
        <Prevention />
      </Match>
      <Match when={route()[0] === "fl"}>
        <Federated />
      </Match>
      <Match when={route()[0] === "settings"}>
        <Settings />
      </Match>
    </Switch>
  );
}

function NotFound() {
  return (
    <section>
      <h1>Not found</h1>
      <p>
        There is no page at <code>{hash()}</code>. <a href="#/">Back to the dashboard</a>.
      </p>
    </section>
  );
}

function App() {
  const [ready, setReady] = createSignal(false);
  onMount(() => resume().finally(() => setReady(true)));
  // Page titles follow the route, for tabs and screen readers.
  const title = () => NAV.find((n) => n.path === (route()[0] ?? ""))?.label ?? "gatewatch";
  const t = setInterval(() => (document.title = `${title()} · gatewatch`), 500);
  onCleanup(() => clearInterval(t));
  return (
    <Show when={ready()} fallback={<p class="loading">Loading…</p>}>
      <Show when={user()} fallback={<Login />}>
        <Show when={!user()?.must_change_password} fallback={<ChangePassword first />}>
          <Shell>
            <Router />
          </Shell>
        </Show>
      </Show>
    </Show>
  );
}

render(() => <App />, document.getElementById("root")!);
