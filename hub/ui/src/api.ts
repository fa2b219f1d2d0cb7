// The hub's REST API and WebSockets, as the console uses them. Every call goes through `api()`,
// which adds the access token, renews it once from the refresh cookie on a 401 and turns every
// error the API returns into an `ApiError` whose message is the API's own words.
import { createSignal } from "solid-js";

export type Role = "viewer" | "operator" | "admin";
export interface User {
  id: string;
  username: string;
  email: string;
  role: Role;
  /** The first admin's password was set at first start: ask for a new one first. */
  must_change_password?: boolean;
}
interface TokenOut {
  access_token: string;
  expires_in: number;
  user: User;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

const TOKEN_KEY = "gatewatch.token";
const USER_KEY = "gatewatch.user";
// Set while a refresh cookie may exist, so a new tab renews the session instead of asking again
// (and a first visit does not ask the API for a session it cannot have).
const SIGNED_IN_KEY = "gatewatch.signed-in";

function stored<T>(key: string): T | null {
  try {
    const raw = sessionStorage.getItem(key);
    return raw ? (JSON.parse(raw) as T) : null;
  } catch {
    return null;
  }
}

const [user, setUser] = createSignal<User | null>(stored<User>(USER_KEY));
const [expiredNotice, setExpiredNotice] = createSignal<string | null>(null);
let token: string | null = stored<string>(TOKEN_KEY);

export { user, expiredNotice };

const rank: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };
/** Whether the signed-in user holds at least `role`. */
export function can(role: Role): boolean {
  const u = user();
  return !!u && rank[u.role] >= rank[role];
}

function keep(t: TokenOut) {
  token = t.access_token;
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify(t.access_token));
  sessionStorage.setItem(USER_KEY, JSON.stringify(t.user));
  localStorage.setItem(SIGNED_IN_KEY, "1");
  setUser(t.user);
  setExpiredNotice(null);
}

function forget(notice: string | null) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
  localStorage.removeItem(SIGNED_IN_KEY);
  setUser(null);
  setExpiredNotice(notice);
}

async function errorOf(res: Response): Promise<ApiError> {
  let message = `${res.status} ${res.statusText}`;
  try {
    // The API's one error shape: {"error": {"code", "message", "fields"?}}.
    const err = (await res.json())?.error;
    if (err && typeof err.message === "string") {
      message = err.message;
      if (Array.isArray(err.fields) && err.fields.length) {
        message += ": " + err.fields.map((f: { field: string; message: string }) => `${f.field} — ${f.message}`).join("; ");
      }
    }
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(res.status, message);
}

export async function login(username: string, password: string): Promise<User> {
  const res = await fetch("/api/v1/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
    credentials: "same-origin",
  });
  if (!res.ok) throw await errorOf(res);
  const t = (await res.json()) as TokenOut;
  keep(t);
  return t.user;
}

/** Changes the signed-in user's password, then signs in again (the change ends other sessions). */
export async function changePassword(current: string, next: string) {
  const me = user();
  if (!me) throw new ApiError(401, "not signed in");
  await api("/auth/password", { method: "POST", body: { current_password: current, new_password: next } });
  await login(me.username, next);
}

export async function logout() {
  try {
    await api("/auth/logout", { method: "POST" });
  } finally {
    forget(null);
  }
}

async function renew(): Promise<boolean> {
  const res = await fetch("/api/v1/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
    credentials: "same-origin",
  });
  if (!res.ok) return false;
  keep((await res.json()) as TokenOut);
  return true;
}

export interface CallOptions {
  method?: string;
  body?: unknown;
  raw?: BodyInit;
  contentType?: string;
}

async function send(path: string, o: CallOptions): Promise<Response> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let body: BodyInit | undefined;
  if (o.raw !== undefined) {
    body = o.raw;
    if (o.contentType) headers["Content-Type"] = o.contentType;
  } else if (o.body !== undefined) {
    body = JSON.stringify(o.body);
    headers["Content-Type"] = "application/json";
  }
  return fetch("/api/v1" + path, { method: o.method ?? "GET", headers, body, credentials: "same-origin" });
}

/** Calls `/api/v1{path}`; resolves to the parsed JSON (or null for 204). */
export async function api<T = unknown>(path: string, o: CallOptions = {}): Promise<T> {
  let res = await send(path, o);
  // A 401 from sign-in or renewal itself is an answer, not an expired session.
  if (res.status === 401 && path !== "/auth/login" && path !== "/auth/refresh") {
    if (await renew()) {
      res = await send(path, o);
    }
    if (res.status === 401) {
      forget("Your session expired: sign in again.");
      throw await errorOf(res);
    }
  }
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return null as T;
  const type = res.headers.get("Content-Type") ?? "";
  return (type.includes("json") ? await res.json() : await res.text()) as T;
}

/** Downloads `/api/v1{path}` with the token and hands it to the browser as a file. */
export async function download(path: string, filename: string) {
  let res = await send(path, {});
  if (res.status === 401 && (await renew())) res = await send(path, {});
  if (!res.ok) throw await errorOf(res);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Opens a report (HTML or PDF) in a new tab. */
export async function openBlob(path: string) {
  // The tab opens now, inside the click, so that popup blockers let it through; it is filled
  // once the report has arrived.
  const tab = window.open("", "_blank");
  try {
    let res = await send(path, {});
    if (res.status === 401 && (await renew())) res = await send(path, {});
    if (!res.ok) throw await errorOf(res);
    const url = URL.createObjectURL(await res.blob());
    if (tab) tab.location.href = url;
    else location.href = url;
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (e) {
    tab?.close();
    throw e;
  }
}

/** Checks the stored session at start: renews it, or forgets it. */
export async function resume() {
  if (!token) {
    if (localStorage.getItem(SIGNED_IN_KEY) && (await renew().catch(() => false))) return;
    forget(null);
    return;
  }
  try {
    const me = await api<User>("/auth/me");
    setUser(me);
  } catch {
    /* api() already forgot an expired session */
  }
}

export interface WsEvent<T = any> {
  type: string;
  data: T;
}

/**
 * Subscribes to `/ws/{path}` and reconnects (with a fresh token) until `close()` is called.
 * `onEvent` receives every event; `onState` whether the socket is open.
 */
export function subscribe(path: string, onEvent: (e: WsEvent) => void, onState?: (open: boolean) => void) {
  let ws: WebSocket | null = null;
  let closed = false;
  let retry = 500;
  const connect = () => {
    if (closed || !token) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/ws/${path}?token=${encodeURIComponent(token)}`);
    ws.onopen = () => {
      retry = 500;
      onState?.(true);
    };
    ws.onmessage = (m) => {
      try {
        onEvent(JSON.parse(m.data) as WsEvent);
      } catch {
        /* a frame that is not an event */
      }
    };
    ws.onclose = () => {
      onState?.(false);
      if (closed) return;
      setTimeout(async () => {
        // The token may have expired while the socket was open.
        await renew().catch(() => false);
        connect();
      }, retry);
      retry = Math.min(retry * 2, 10_000);
    };
  };
  connect();
  return {
    close() {
      closed = true;
      ws?.close();
    },
  };
}

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  size: number;
}

export function qs(params: Record<string, string | number | boolean | undefined | null>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") p.set(k, String(v));
  }
  const s = p.toString();
  return s ? "?" + s : "";
}
