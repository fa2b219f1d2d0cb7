// Settings & fleet: system settings, model upload, a connectivity check, the agents and their
// enrollment, and user registration. Every control is shown only to roles the API lets use it.
import { createSignal, For, JSX, Show } from "solid-js";
import { api, can, Role } from "../api";
import { ago, Badge, Col, ErrorLine, family, Field, poll, Table, when } from "../ui";

interface SettingOut { key: string; value: unknown; updated_at: string | null; updated_by: string | null; is_default: boolean }
interface ModelUploaded { model_version: string; arch_hash: string; families: string[]; threshold: number; active: boolean }
interface ConnectionReport {
  database: string; database_latency_ms: number; server_version: string; websocket_clients: number; websocket_events_dropped: number;
}
interface AgentOut {
  id: string; name: string; hostname: string | null; version: string | null; status: string;
  last_heartbeat_at: string | null; model_version: string | null; revoked_at: string | null; created_at: string;
  devices: number; fl_local_windows: Record<string, number> | null;
}
interface TokenIssued { token: string; expires_at: string; ca_sha256: string; enroll_command: string }
interface UserOut { id: string; username: string; email: string; role: Role; is_active: boolean; created_at: string }

/** Runs an action, keeping its error (shown by ErrorLine) and busy state. */
function action() {
  const [error, setError] = createSignal<unknown>(null);
  const [busy, setBusy] = createSignal(false);
  const run = async (f: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try { await f(); } catch (e) { setError(e); } finally { setBusy(false); }
  };
  return { error, busy, run };
}

export default function Settings() {
  return (
    <section>
      <h1>Settings &amp; fleet</h1>
      <SystemSettings />
      <Show when={can("admin")}>
        <div class="grid">
          <ModelUpload />
          <TestConnection />
        </div>
      </Show>
      <Agents />
      <Show when={can("admin")}>
        <div class="grid">
          <Enrollment />
          <Users />
        </div>
      </Show>
    </section>
  );
}

const shown = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));

function SystemSettings() {
  const [rows, setRows] = createSignal<SettingOut[]>([]);
  const [editing, setEditing] = createSignal<string | null>(null);
  const [draft, setDraft] = createSignal("");
  const load = poll(async () => setRows(await api<SettingOut[]>("/settings")), 60_000);
  const save = action();

  const edit = (s: SettingOut) => { setEditing(s.key); setDraft(shown(s.value)); };
  // The API checks the JSON type (retention_days takes 30, not "30"): convert the text back
  // into the type the setting already has.
  function typed(old: unknown, text: string): unknown {
    if (typeof old === "number") {
      const n = Number(text);
      if (text.trim() === "" || !Number.isFinite(n)) throw new Error("Enter a number.");
      return n;
    }
    if (typeof old === "boolean") return text === "true";
    if (typeof old === "string") return text;
    return JSON.parse(text);
  }
  const submit = (s: SettingOut) => (ev: Event) => {
    ev.preventDefault();
    void save.run(async () => {
      const out = await api<SettingOut>(`/settings/${encodeURIComponent(s.key)}`, { method: "PUT", body: { value: typed(s.value, draft()) } });
      setRows(rows().map((r) => (r.key === out.key ? out : r)));
      setEditing(null);
    });
  };

  const valueCell = (s: SettingOut) => (
    <Show when={editing() === s.key} fallback={<code>{shown(s.value)}</code>}>
      <form class="row" onSubmit={submit(s)}>
        <Field label={`New value of ${s.key}`}>
          <Show when={typeof s.value === "boolean"} fallback={
            <input type={typeof s.value === "number" ? "number" : "text"} step="any" required={typeof s.value === "number"}
              value={draft()} onInput={(e) => setDraft(e.currentTarget.value)} />
          }>
            <select value={draft()} onChange={(e) => setDraft(e.currentTarget.value)}>
              <option value="true">true</option>
              <option value="false">false</option>
            </select>
          </Show>
        </Field>
        <button type="submit" disabled={save.busy()}>Save {s.key}</button>
        <button type="button" class="secondary" onClick={() => setEditing(null)}>Cancel</button>
      </form>
    </Show>
  );

  const cols: Col<SettingOut>[] = [
    ["Key", (s) => <code>{s.key}</code>],
    ["Value", valueCell],
    ["Default", (s) => (s.is_default ? "yes" : "no")],
    ["Updated", (s) => when(s.updated_at)],
  ];
  if (can("admin")) {
    cols.push(["Edit", (s) => <Show when={editing() !== s.key}><button class="secondary" onClick={() => edit(s)}>Edit {s.key}</button></Show>]);
  }

  return (
    <div class="panel">
      <h2>Settings</h2>
      <ErrorLine error={load.error()} />
      <ErrorLine error={save.error()} />
      <Table label="Settings" rows={rows()} cols={cols} />
    </div>
  );
}

function ModelUpload() {
  let form!: HTMLFormElement;
  const [result, setResult] = createSignal<ModelUploaded | null>(null);
  const [activate, setActivate] = createSignal(true);
  const up = action();
  const submit = (ev: Event) => {
    ev.preventDefault();
    setResult(null);
    // Field names follow ModelUpload in api/settings.rs; the FormData built from the form
    // carries model, scaler, metadata and version, and `activate` is set explicitly because an
    // unchecked box sends nothing (which the API reads as true).
    const data = new FormData(form);
    if (!String(data.get("version") ?? "").trim()) data.delete("version");
    data.set("activate", activate() ? "true" : "false");
    // No contentType: the browser writes the multipart boundary itself.
    void up.run(async () => { setResult(await api<ModelUploaded>("/settings/model/upload", { method: "POST", raw: data })); });
  };
  return (
    <div class="panel">
      <h2>Upload a model</h2>
      <form ref={form} onSubmit={submit}>
        <Field label="ONNX graph (model.onnx)"><input type="file" name="model" accept=".onnx" required /></Field>
        <Field label="Feature scaler (scaler.json)"><input type="file" name="scaler" accept=".json,application/json" required /></Field>
        <Field label="Metadata (metadata.json)"><input type="file" name="metadata" accept=".json,application/json" required /></Field>
        <Field label="Version (optional)" hint="stores under this version instead of the metadata's">
          <input type="text" name="version" maxLength={100} />
        </Field>
        <Field label="Make it the active model">
          <input type="checkbox" checked={activate()} onChange={(e) => setActivate(e.currentTarget.checked)} />
        </Field>
        <p><button type="submit" disabled={up.busy()}>{up.busy() ? "Uploading…" : "Upload model"}</button></p>
      </form>
      <ErrorLine error={up.error()} />
      <Show when={result()}>
        {(r) => (
          <div role="status">
            <p>Model <code>{r().model_version}</code> stored{r().active ? " and active" : ""}.</p>
            <ul>
              <li>Architecture hash: <code>{r().arch_hash}</code></li>
              <li>Families: {r().families.map(family).join(", ")}</li>
              <li>Threshold: {r().threshold}</li>
            </ul>
          </div>
        )}
      </Show>
    </div>
  );
}

function TestConnection() {
  const [report, setReport] = createSignal<ConnectionReport | null>(null);
  const t = action();
  const test = () => void t.run(async () => { setReport(await api<ConnectionReport>("/settings/test-connection", { method: "POST" })); });
  return (
    <div class="panel">
      <h2>Connection</h2>
      <button onClick={test} disabled={t.busy()}>Test connection</button>
      <ErrorLine error={t.error()} />
      <Show when={report()}>
        {(r) => (
          <div role="status"><ul>
            <li>Database: <Badge kind={r().database} /> in {r().database_latency_ms.toFixed(1)} ms</li>
            <li>PostgreSQL version: {r().server_version}</li>
            <li>WebSocket clients: {r().websocket_clients}</li>
            <li>WebSocket events dropped: {r().websocket_events_dropped}</li>
          </ul></div>
        )}
      </Show>
    </div>
  );
}

/** "1200 windows (benign 1000, scan 200)" from the agent's windows per family. */
function windows(w: Record<string, number> | null): string {
  const e = Object.entries(w ?? {}).filter(([, n]) => typeof n === "number" && n > 0);
  if (!e.length) return "—";
  const total = e.reduce((a, [, n]) => a + n, 0);
  return `${total} windows (${e.sort((a, b) => b[1] - a[1]).map(([f, n]) => `${family(f)} ${n}`).join(", ")})`;
}

function Agents() {
  const [rows, setRows] = createSignal<AgentOut[]>([]);
  const load = poll(async () => setRows(await api<AgentOut[]>("/agents")), 15_000);
  const rev = action();
  const revoke = (a: AgentOut) => {
    if (!confirm(`Revoke agent ${a.name}? Its certificate stops working at once and it must be enrolled again.`)) return;
    void rev.run(async () => {
      const out = await api<AgentOut>(`/agents/${a.id}/revoke`, { method: "POST" });
      setRows(rows().map((r) => (r.id === out.id ? out : r)));
    });
  };
  const cols: Col<AgentOut>[] = [
    ["Name", (a) => a.name],
    ["Hostname", (a) => a.hostname ?? "—"],
    ["Status", (a) => <Badge kind={a.status} />],
    ["Version", (a) => a.version ?? "—"],
    ["Model version", (a) => a.model_version ?? "—"],
    ["Last heartbeat", (a) => <span title={when(a.last_heartbeat_at)}>{ago(a.last_heartbeat_at)}</span>],
    ["Devices", (a) => a.devices],
    ["FL local set", (a) => windows(a.fl_local_windows)],
    ["Revoked", (a) => (a.revoked_at ? when(a.revoked_at) : "no")],
  ];
  if (can("admin")) {
    cols.push([
      "Actions",
      (a) => (
        <Show when={!a.revoked_at}>
          <button class="danger" disabled={rev.busy()} onClick={() => revoke(a)}>Revoke {a.name}</button>
        </Show>
      ),
    ]);
  }
  return (
    <div class="panel">
      <h2>Agents</h2>
      <ErrorLine error={load.error()} />
      <ErrorLine error={rev.error()} />
      <Show when={rows().length} fallback={<p class="muted">No agent has enrolled yet.</p>}>
        <Table label="Agents" rows={rows()} cols={cols} />
      </Show>
    </div>
  );
}

function Enrollment() {
  const [ttl, setTtl] = createSignal("60");
  const [issued, setIssued] = createSignal<TokenIssued | null>(null);
  const [copied, setCopied] = createSignal<string | null>(null);
  const mk = action();
  const create = (ev: Event) => {
    ev.preventDefault();
    setCopied(null);
    void mk.run(async () => {
      const n = Number(ttl());
      if (!Number.isInteger(n)) throw new Error("TTL: enter a whole number of minutes.");
      setIssued(await api<TokenIssued>("/agents/enrollment-tokens", { method: "POST", body: { ttl_minutes: n } }));
    });
  };
  let pre!: HTMLPreElement;
  // The Clipboard API exists only in secure contexts (HTTPS or localhost); without it the
  // command is selected so Ctrl+C copies it.
  async function copy(text: string) {
    try {
      if (!navigator.clipboard) throw new Error("no clipboard");
      await navigator.clipboard.writeText(text);
      setCopied("Command copied.");
    } catch {
      window.getSelection()?.selectAllChildren(pre);
      setCopied("Could not use the clipboard (it needs HTTPS or localhost and permission): the command is selected, press Ctrl+C to copy it.");
    }
  }
  return (
    <div class="panel">
      <h2>Enroll an agent</h2>
      <form class="row" onSubmit={create}>
        <Field label="Token lifetime (minutes)" hint="at most a week (10080)">
          <input type="number" min="1" max="10080" step="1" required value={ttl()} onInput={(e) => setTtl(e.currentTarget.value)} />
        </Field>
        <button type="submit" disabled={mk.busy()}>Create enrollment token</button>
      </form>
      <ErrorLine error={mk.error()} />
      <Show when={issued()}>
        {(t) => (
          <div>
            <p>Token (shown once): <code>{t().token}</code></p>
            <p>Expires {when(t().expires_at)}. CA SHA-256: <code>{t().ca_sha256}</code></p>
            <p class="muted">Run on the gateway, replacing HUB with the address it reaches the hub at:</p>
            <pre ref={pre} class="stream" style={{ "white-space": "pre-wrap", "word-break": "break-all" }}>{t().enroll_command}</pre>
            <button class="secondary" onClick={() => void copy(t().enroll_command)}>Copy command</button>
            <Show when={copied()}><p role="status">{copied()}</p></Show>
          </div>
        )}
      </Show>
    </div>
  );
}

function Users() {
  const [f, setF] = createSignal({ username: "", email: "", password: "", role: "viewer" as Role });
  const [created, setCreated] = createSignal<UserOut | null>(null);
  const [users, setUsers] = createSignal<UserOut[]>([]);
  const list = poll(async () => setUsers(await api<UserOut[]>("/auth/users")), 60_000);
  const reg = action();
  const set = (k: "username" | "email" | "password" | "role") => (e: { currentTarget: { value: string } }) =>
    setF({ ...f(), [k]: e.currentTarget.value });
  const submit = (ev: Event) => {
    ev.preventDefault();
    setCreated(null);
    void reg.run(async () => {
      setCreated(await api<UserOut>("/auth/register", { method: "POST", body: f() }));
      setF({ username: "", email: "", password: "", role: "viewer" });
      list.reload();
    });
  };
  return (
    <div class="panel">
      <h2>Users</h2>
      <ErrorLine error={list.error()} />
      <Table label="Users" rows={users()} cols={[
        ["Username", (u) => u.username],
        ["Email", (u) => u.email],
        ["Role", (u) => u.role],
        ["Active", (u) => (u.is_active ? "yes" : "no")],
        ["Created", (u) => when(u.created_at)],
      ]} />
      <h2>Register a user</h2>
      <form onSubmit={submit}>
        <Field label="Username"><input type="text" required autocomplete="off" value={f().username} onInput={set("username")} /></Field>
        <Field label="Email"><input type="email" required autocomplete="off" value={f().email} onInput={set("email")} /></Field>
        <Field label="Password" hint="10-256 characters">
          <input type="password" required minLength={10} maxLength={256} autocomplete="new-password" value={f().password} onInput={set("password")} />
        </Field>
        <Field label="Role">
          <select value={f().role} onChange={set("role")}>
            <option value="viewer">viewer</option>
            <option value="operator">operator</option>
            <option value="admin">admin</option>
          </select>
        </Field>
        <p><button type="submit" disabled={reg.busy()}>Register user</button></p>
      </form>
      <ErrorLine error={reg.error()} />
      <Show when={created()}>
        {(u) => <p role="status">User <strong>{u().username}</strong> ({u().role}) created.</p>}
      </Show>
    </div>
  );
}
