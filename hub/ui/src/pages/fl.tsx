// Federated learning: the live run, starting and stopping runs, past runs and their rounds, and
// every model the hub holds (download, activate, roll back).
import { createEffect, createSignal, For, JSX, on, onCleanup, Show } from "solid-js";
import { createStore } from "solid-js/store";
import { api, can, download, Page, qs, subscribe } from "../api";
import { ago, Badge, Chart, Col, ErrorLine, Field, num, pct, poll, Table, when } from "../ui";

interface Member { member: number; agent_id: string; online: boolean }
/** `Status` in hub/src/fl/mod.rs: what the `fl.status` event carries. */
interface RunStatus {
  state: string; run_id: string | null; round: number | null; num_rounds: number | null; epoch: number | null;
  clients_selected: number; clients_uploaded: number; committee: Member[]; deadline: string | null;
  global_model: string | null; message: string | null;
}
/** GET /fl/status adds totals the event does not carry. */
interface FlStatus extends RunStatus {
  rounds_completed?: number; rounds_failed?: number; last_round?: number | null; connected_agents?: number;
}
interface FlRun {
  id: string; status: string; params: Record<string, unknown>; start_model: string; epoch: number;
  rounds_done: number; rounds_failed: number; message: string | null; started_at: string; ended_at: string | null;
}
interface FlRound {
  id: number; round_number: number; run_round: number | null; status: string; reason: string | null;
  clients_selected: number; clients_uploaded: number; clients_dropped: number; updates_rejected: number;
  global_loss: number | null; global_f1: number | null; f1_before: number | null; bytes_received: number;
  duration_seconds: number | null; model_version: string | null; activated: boolean; timestamp: string;
}
interface ClientMetric {
  id: number; client_id: string; status: string; reason: string | null; num_samples: number;
  local_loss: number; local_accuracy: number; f1_before: number | null; f1_after: number | null;
  validation_windows: number; upload_bytes: number; training_time_sec: number; encrypted: boolean;
}
interface ModelInfo {
  active_model: string; active_version: string | null; latest_fl_model: string | null;
  last_round: number | null; checkpoint: string | null;
}

/** The `active_model` name of the model shipped with the hub (DEFAULT_MODEL in api/settings.rs). */
const BUNDLED = "cnn_lstm_default";
/** The files GET /fl/model/download serves. */
const MODEL_FILES = ["model.onnx", "params.bin", "scaler.json", "metadata.json"];

function bytes(n?: number | null): string {
  if (n === undefined || n === null) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}
const short = (id?: string | null) => (id ? id.slice(0, 8) : "—");
const unix = (ts: string) => Math.floor(new Date(ts).getTime() / 1000);
const statusCell = (s: string, reason: string | null) => <><Badge kind={s} /> <span class="muted">{reason ?? ""}</span></>;

function Card(props: { label: string; children: JSX.Element }) {
  return <div class="card"><div class="label">{props.label}</div><div class="value">{props.children}</div></div>;
}

export default function Federated() {
  const [status, setStatus] = createSignal<FlStatus | null>(null);
  const [live, setLive] = createSignal(false);
  const [names, setNames] = createSignal<Record<string, string>>({});
  const [runs, setRuns] = createSignal<FlRun[]>([]);
  const [picked, setPicked] = createSignal<string | null>(null);
  // Until a run is picked the page follows the newest one, so a new run shows up by itself.
  const runId = () => picked() ?? runs()[0]?.id ?? null;
  const [rounds, setRounds] = createSignal<FlRound[]>([]);
  const [roundsError, setRoundsError] = createSignal<unknown>(null);
  const [model, setModel] = createSignal<ModelInfo | null>(null);

  const statusPoll = poll(async () => {
    setStatus(await api<FlStatus>("/fl/status"));
    // Agent names turn committee seats into something readable.
    const agents = await api<{ id: string; name: string }[]>("/agents");
    setNames(Object.fromEntries(agents.map((a) => [a.id, a.name])));
  }, 30_000);
  const runsPoll = poll(async () => setRuns(await api<FlRun[]>("/fl/runs")), 30_000);
  const modelPoll = poll(async () => setModel(await api<ModelInfo>("/fl/model/current")), 60_000);

  let loadSeq = 0;
  async function loadRounds(id: string | null) {
    const seq = ++loadSeq;
    if (!id) return setRounds([]);
    try {
      // A page holds at most 200 rounds and a run at most 1000: fetch pages until all are in.
      const all: FlRound[] = [];
      for (let page = 1; page <= 5; page++) {
        const p = await api<Page<FlRound>>(`/fl/rounds${qs({ run_id: id, size: 200, page })}`);
        all.push(...p.items);
        if (all.length >= p.total || p.items.length === 0) break;
      }
      if (seq === loadSeq) { setRounds(all); setRoundsError(null); }
    } catch (e) {
      if (seq === loadSeq) setRoundsError(e);
    }
  }
  createEffect(on(runId, (id) => void loadRounds(id)));

  // The event carries only the run's own state; keep the totals from the last GET.
  const sub = subscribe(
    "fl",
    (e) => {
      if (e.type === "fl.status") {
        const prev = status();
        setStatus({ ...(prev ?? {}), ...(e.data as RunStatus) });
        if (!prev || prev.state !== e.data.state || prev.run_id !== e.data.run_id) {
          void runsPoll.reload();
          void statusPoll.reload();
        }
      } else if (e.type === "fl.round") {
        void runsPoll.reload();
        void modelPoll.reload();
        void loadRounds(runId());
      }
    },
    setLive,
  );
  onCleanup(() => sub.close());

  return (
    <section>
      <h1>Federated learning</h1>
      <StatusPanel status={status()} live={live()} names={names()} error={statusPoll.error()} />
      <Show when={can("admin")}>
        <StartStop status={status()} onChange={() => { setPicked(null); void statusPoll.reload(); void runsPoll.reload(); }} />
      </Show>

      <h2>Runs</h2>
      <ErrorLine error={runsPoll.error()} />
      <Show when={runs().length} fallback={<p class="muted">No run yet.</p>}>
        <Table label="Runs" rows={runs()} caption="Newest first; pick a run to see its rounds." cols={[
          ["Run", (r) => <button class="secondary" aria-pressed={runId() === r.id} onClick={() => setPicked(r.id)} title={r.id}>Run {short(r.id)}</button>],
          ["Status", (r) => <Badge kind={r.status} />],
          ["Started", (r) => when(r.started_at)],
          ["Ended", (r) => (r.ended_at ? when(r.ended_at) : "—")],
          ["Rounds done", (r) => r.rounds_done],
          ["Failed", (r) => r.rounds_failed],
          ["Key epoch", (r) => r.epoch],
          ["Start model", (r) => r.start_model || "—"],
          ["Message", (r) => r.message ?? ""],
        ]} />
      </Show>

      <Rounds runId={runId()} rounds={rounds()} names={names()} error={roundsError()} />
      <Models info={model()} rounds={rounds()} error={modelPoll.error()} onChange={() => void modelPoll.reload()} />
    </section>
  );
}

function StatusPanel(props: { status: FlStatus | null; live: boolean; names: Record<string, string>; error: unknown }) {
  const s = () => props.status;
  return (
    <div class="panel">
      <h2>Live status <small class="muted">({props.live ? "live" : "reconnecting…"})</small></h2>
      <ErrorLine error={props.error} />
      <Show when={s()} fallback={<p class="muted">Loading…</p>}>
        {(st) => (
          <>
            <div class="cards">
              <Card label="State"><Badge kind={st().state} /></Card>
              <Card label="Run"><span title={st().run_id ?? ""}>{short(st().run_id)}</span></Card>
              <Card label="Round">{st().round ?? "—"} <Show when={st().num_rounds}>of {st().num_rounds}</Show></Card>
              <Card label="Key epoch">{st().epoch ?? "—"}</Card>
              <Card label="Clients uploaded / selected">{st().clients_uploaded} / {st().clients_selected}</Card>
              <Card label="Round deadline">{st().deadline ? when(st().deadline) : "—"}</Card>
              <Card label="Connected agents">{st().connected_agents ?? "—"}</Card>
              <Card label="Rounds completed / failed">{st().rounds_completed ?? "—"} / {st().rounds_failed ?? "—"}</Card>
            </div>
            <Show when={st().global_model}><p>Training from model <code>{st().global_model}</code>.</p></Show>
            <Show when={st().message}><p class="notice">{st().message}</p></Show>
            <h3>Key committee</h3>
            <Show when={st().committee.length} fallback={<p class="muted">No committee (no run holds a key).</p>}>
              <ul>
                <For each={st().committee}>
                  {(m) => (
                    <li>
                      Member {m.member}: {props.names[m.agent_id] ?? short(m.agent_id)}{" "}
                      <Badge kind={m.online ? "online" : "offline"} />
                    </li>
                  )}
                </For>
              </ul>
            </Show>
          </>
        )}
      </Show>
    </div>
  );
}

type NumKey =
  | "num_rounds" | "min_clients" | "local_epochs" | "fraction" | "deadline_secs" | "committee_size"
  | "threshold" | "learning_rate" | "batch_size" | "clip_norm" | "max_weight" | "max_failed_rounds";
// Defaults and ranges mirror RunParams::default() and check(); the API still has the last word.
const NUM_FIELDS: { key: NumKey; label: string; value: string; min?: number; max?: number; step?: string; hint?: string }[] = [
  { key: "num_rounds", label: "Rounds", value: "3", min: 1, max: 1000 },
  { key: "min_clients", label: "Minimum clients", value: "2", min: 2, max: 10000, hint: "uploads a round needs (one update is never decrypted alone)" },
  { key: "local_epochs", label: "Local epochs", value: "2", min: 0, max: 100, hint: "0: measure only" },
  { key: "fraction", label: "Share of agents per round", value: "1", min: 0, max: 1, step: "any", hint: "above 0, at most 1" },
  { key: "deadline_secs", label: "Round deadline (seconds)", value: "300", min: 10, max: 86400 },
  { key: "committee_size", label: "Committee size", value: "3", min: 1, max: 16 },
  { key: "threshold", label: "Decryption threshold", value: "2", min: 1, max: 16, hint: "members needed, at most the committee size" },
  { key: "learning_rate", label: "Learning rate", value: "0.001", min: 0, max: 1, step: "any" },
  { key: "batch_size", label: "Batch size", value: "64", min: 1, max: 4096 },
  { key: "clip_norm", label: "Clip norm (L2)", value: "10", min: 0, step: "any" },
  { key: "max_weight", label: "Largest weight (windows)", value: "10000", min: 1 },
  { key: "max_failed_rounds", label: "Stop after failed rounds", value: "3", min: 0 },
];

function StartStop(props: { status: FlStatus | null; onChange: () => void }) {
  const [form, setForm] = createStore({
    ...(Object.fromEntries(NUM_FIELDS.map((f) => [f.key, f.value])) as Record<NumKey, string>),
    activate: "manual",
    ckks_params: "gw-8192",
  });
  const [error, setError] = createSignal<unknown>(null);
  const [done, setDone] = createSignal<string | null>(null);
  const [busy, setBusy] = createSignal(false);
  const running = () => !!props.status && props.status.state !== "idle";

  async function act(f: () => Promise<string>) {
    setBusy(true); setError(null); setDone(null);
    try { setDone(await f()); props.onChange(); } catch (e) { setError(e); } finally { setBusy(false); }
  }
  const start = (ev: Event) => {
    ev.preventDefault();
    void act(async () => {
      const body: Record<string, unknown> = { activate: form.activate, ckks_params: form.ckks_params };
      for (const f of NUM_FIELDS) {
        const v = Number(form[f.key]);
        // JSON has no NaN: catch it here rather than send null.
        if (form[f.key].trim() === "" || !Number.isFinite(v)) throw new Error(`${f.label}: enter a number`);
        body[f.key] = v;
      }
      const r = await api<{ run_id: string }>("/fl/start", { method: "POST", body });
      return `Run ${r.run_id} started.`;
    });
  };
  const stop = () => {
    if (!confirm("Stop the running federated-learning run at its next step?")) return;
    void act(async () => `Run ${(await api<{ run_id: string }>("/fl/stop", { method: "POST" })).run_id} is stopping.`);
  };

  return (
    <div class="panel">
      <h2>Start or stop a run</h2>
      <form onSubmit={start}>
        <div class="row">
          <For each={NUM_FIELDS}>
            {(f) => (
              <Field label={f.label} hint={f.hint}>
                <input type="number" required min={f.min} max={f.max} step={f.step ?? "1"} value={form[f.key]}
                  onInput={(e) => setForm(f.key, e.currentTarget.value)} />
              </Field>
            )}
          </For>
          <Field label="Activate new models" hint="if better: when the clients' F1 and recall do not drop">
            <select value={form.activate} onChange={(e) => setForm("activate", e.currentTarget.value)}>
              <option value="manual">manually</option>
              <option value="if_better">if better</option>
            </select>
          </Field>
          <Field label="CKKS parameters">
            <select value={form.ckks_params} onChange={(e) => setForm("ckks_params", e.currentTarget.value)}>
              <option value="gw-4096">gw-4096</option>
              <option value="gw-8192">gw-8192</option>
              <option value="gw-16384">gw-16384</option>
            </select>
          </Field>
        </div>
        <div class="row" style={{ "margin-top": "0.75rem" }}>
          <button type="submit" disabled={busy() || running()}>Start run</button>
          <button type="button" class="danger" disabled={busy() || !running()} onClick={stop}>Stop run</button>
        </div>
      </form>
      <ErrorLine error={error()} />
      <Show when={done()}><p role="status">{done()}</p></Show>
    </div>
  );
}

function Rounds(props: { runId: string | null; rounds: FlRound[]; names: Record<string, string>; error: unknown }) {
  // The round shown: its hub-wide number (what /fl/rounds/{n} takes) and its number in the run.
  const [picked, setPicked] = createSignal<number | null>(null);
  const [pickedLabel, setPickedLabel] = createSignal("");
  const [clients, setClients] = createSignal<ClientMetric[]>([]);
  const [error, setError] = createSignal<unknown>(null);
  createEffect(on(() => props.runId, () => { setPicked(null); setClients([]); setError(null); }));

  // Round numbers are global across runs (the hub counts on from the highest), so
  // /fl/rounds/{n} needs no run id.
  async function show(n: number, label: string) {
    setPicked(n); setPickedLabel(label); setError(null); setClients([]);
    try {
      const d = await api<{ clients: ClientMetric[] }>(`/fl/rounds/${n}`);
      if (picked() === n) setClients(d.clients);
    } catch (e) {
      setError(e);
    }
  }
  // The shared Chart has a time x axis, so rounds sit at the time they ended.
  const data = () => {
    const r = props.rounds;
    return [r.map((x) => unix(x.timestamp)), r.map((x) => x.global_loss), r.map((x) => x.global_f1)] as [number[], (number | null)[], (number | null)[]];
  };

  return (
    <>
      <h2>Rounds of run {short(props.runId)}</h2>
      <ErrorLine error={props.error} />
      <Show when={props.rounds.length} fallback={<p class="muted">No rounds recorded for this run.</p>}>
        <div class="panel">
          <Show when={props.rounds.length >= 2} fallback={<p class="muted">Loss and F1 are charted from the second round on.</p>}>
            <Chart title="Global loss and weighted F1 per round" data={data}
              series={[{ label: "loss", color: "--bad" }, { label: "F1", color: "--ok" }]} />
          </Show>
        </div>
        <Table label="Rounds" rows={props.rounds} cols={[
          ["Round", (r) => (
            <button class="secondary" aria-pressed={picked() === r.round_number} onClick={() => void show(r.round_number, `${r.run_round ?? r.round_number} (hub round ${r.round_number})`)}
              title={`Hub round ${r.round_number}: show its clients`}>Round {r.run_round ?? r.round_number}</button>
          )],
          ["Status", (r) => statusCell(r.status, r.reason)],
          ["Selected", (r) => r.clients_selected],
          ["Uploaded", (r) => r.clients_uploaded],
          ["Dropped", (r) => r.clients_dropped],
          ["Rejected", (r) => r.updates_rejected],
          ["Loss", (r) => num(r.global_loss, 4)],
          ["F1", (r) => num(r.global_f1)],
          ["F1 before", (r) => num(r.f1_before)],
          ["Bytes", (r) => bytes(r.bytes_received)],
          ["Duration", (r) => (r.duration_seconds === null ? "—" : `${r.duration_seconds.toFixed(1)} s`)],
          ["Model version", (r) => <>{r.model_version ?? "—"} <Show when={r.activated}><Badge kind="ok">activated</Badge></Show></>],
          ["Ended", (r) => ago(r.timestamp)],
        ]} />
      </Show>
      <Show when={picked() !== null}>
        <h3>Clients of round {pickedLabel()}</h3>
        <ErrorLine error={error()} />
        <Show when={clients().length} fallback={<p class="muted">{error() ? "" : "No client metrics for this round."}</p>}>
          <Table label="Clients of the round" rows={clients()} cols={[
            ["Client", (c) => <span title={c.client_id}>{props.names[c.client_id] ?? c.client_id}</span>],
            ["Status", (c) => statusCell(c.status, c.reason)],
            ["Windows", (c) => c.num_samples],
            ["Local loss", (c) => num(c.local_loss, 4)],
            ["Local accuracy", (c) => pct(c.local_accuracy)],
            ["F1 before", (c) => num(c.f1_before)],
            ["F1 after", (c) => num(c.f1_after)],
            ["Validation windows", (c) => c.validation_windows],
            ["Upload", (c) => bytes(c.upload_bytes)],
            ["Training time", (c) => `${c.training_time_sec.toFixed(1)} s`],
            ["Encrypted", (c) => (c.encrypted ? "yes" : "no")],
          ]} />
        </Show>
      </Show>
    </>
  );
}

interface StoredModel { name: string; version: string; origin: string; stored_at: string | null; active: boolean }
interface Version { name: string; version: string; origin: string; storedAt: string | null }

function Models(props: { info: ModelInfo | null; rounds: FlRound[]; error: unknown; onChange: () => void }) {
  const [file, setFile] = createSignal(MODEL_FILES[0]);
  const [error, setError] = createSignal<unknown>(null);
  const [done, setDone] = createSignal<string | null>(null);
  // Every model the hub holds; a federated one made by the shown run says which round.
  const [stored, setStored] = createSignal<StoredModel[]>([]);
  const listing = poll(async () => setStored(await api<StoredModel[]>("/settings/models")), 30_000);
  // A round that ends stores a model: list it at once.
  createEffect(on(() => [props.rounds.length, props.info?.latest_fl_model], () => listing.reload(), { defer: true }));
  const origin = (m: StoredModel) => {
    const round = props.rounds.find((r) => r.model_version === m.version);
    if (round) return `federated, round ${round.run_round ?? round.round_number} of this run`;
    return m.origin === "bundled" ? "bundled with the hub" : m.origin;
  };
  const versions = (): Version[] =>
    stored().map((m) => ({ name: m.name, version: m.version, origin: origin(m), storedAt: m.stored_at }));
  const isActive = (v: string) => props.info?.active_version === v;

  async function act(f: () => Promise<string | void>) {
    setError(null); setDone(null);
    try { const m = await f(); if (m) setDone(m); } catch (e) { setError(e); }
  }
  // Activation is the `active_model` setting: PUT /settings/active_model loads the model first.
  const activate = (name: string, label: string) =>
    act(async () => {
      if (!confirm(`Make ${label} the model the hub scores with?`)) return;
      await api("/settings/active_model", { method: "PUT", body: { value: name } });
      props.onChange();
      return `${label} is now active.`;
    });

  return (
    <>
      <h2>Models</h2>
      <ErrorLine error={props.error ?? listing.error()} />
      <Show when={props.info}>
        {(i) => (
          <p>
            Active: <code>{i().active_version ?? "none loaded"}</code> (setting <code>active_model</code> = <code>{i().active_model}</code>).
            Newest FL model: <code>{i().latest_fl_model ?? "none"}</code>
            <Show when={i().last_round !== null}> from round {i().last_round}</Show>.
          </p>
        )}
      </Show>
      <div class="row">
        <Field label="File to download">
          <select value={file()} onChange={(e) => setFile(e.currentTarget.value)}>
            <For each={MODEL_FILES}>{(f) => <option value={f}>{f}</option>}</For>
          </select>
        </Field>
        <Show when={can("admin") && props.info && props.info.active_model !== BUNDLED}>
          <button class="secondary" onClick={() => void activate(BUNDLED, "the bundled model")}>Roll back to the bundled model</button>
        </Show>
      </div>
      <Show when={versions().length} fallback={<p class="muted">No model version known.</p>}>
        <Table label="Model versions" rows={versions()} cols={[
          ["Version", (v) => <code>{v.version}</code>],
          ["Origin", (v) => v.origin],
          ["Stored", (v) => (v.storedAt ? when(v.storedAt) : "—")],
          ["State", (v) => (isActive(v.version) ? <Badge kind="online">active</Badge> : <span class="muted">stored</span>)],
          ["Actions", (v) => (
            <div class="row">
              <button class="secondary" onClick={() => void act(() => download(qsPath(v.version, file()), `${v.version}-${file()}`))}>
                Download {file()} of {v.version}
              </button>
              <Show when={can("admin") && !isActive(v.version)}>
                <button onClick={() => { void activate(v.name, `model ${v.version}`).then(listing.reload); }}>Activate {v.version}</button>
              </Show>
            </div>
          )],
        ]} />
      </Show>
      <ErrorLine error={error()} />
      <Show when={done()}><p role="status">{done()}</p></Show>
    </>
  );
}

const qsPath = (version: string, file: string) => `/fl/model/download${qs({ version, file })}`;
