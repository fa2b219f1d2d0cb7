// One device: live score chart from `/ws/device/{id}`, recent predictions with their
// explanations, flows with CSV export, monitoring start/stop and pcap replay with the
// command's progress.
import { createSignal, For, onCleanup, Show } from "solid-js";
import { api, can, download, Page, subscribe } from "../api";
import { ago, Badge, Chart, ErrorLine, family, Field, num, pct, poll, when } from "../ui";
import type { Device } from "./devices";

interface Stats {
  flows_total: number;
  predictions_total: number;
  attacks_total: number;
  threats_today: number;
  alerts_unacknowledged: number;
  last_prediction_at: string | null;
}
interface Prediction {
  id: string;
  score: number;
  label: string;
  confidence: number;
  attack_type: string | null;
  model_version: string;
  timestamp: string;
  attack_session_id?: string;
  /** Set when the prediction was explained as it was scored (the hub's `/predict`). */
  feature_importance: unknown;
}
interface Explanation {
  prediction_id: string;
  score: number;
  label: string;
  feature_importance: { feature: string; importance: number }[] | Record<string, number>;
}
interface Flow {
  id: string;
  timestamp: string;
  source_type: string;
  flow_index: number | null;
  features: number[];
}
interface Command {
  id: string;
  command: string;
  status: string;
  result: string | null;
  updated_at: string;
}

// Columns shown per flow: (index in the 78 CIC-IDS2017 features, heading).
const FLOW_FEATURES: [number, string][] = [
  [0, "Destination port"],
  [1, "Duration (µs)"],
  [2, "Fwd packets"],
  [3, "Bwd packets"],
  [14, "Bytes/s"],
];
const LIVE_POINTS = 300;

/** Feature bars, largest first, whatever shape the explanation came in. */
function bars(e: Explanation): { feature: string; importance: number }[] {
  const fi = e.feature_importance;
  const list = Array.isArray(fi) ? fi : Object.entries(fi).map(([feature, importance]) => ({ feature, importance: Number(importance) }));
  return list.sort((a, b) => Math.abs(b.importance) - Math.abs(a.importance)).slice(0, 12);
}

export default function DeviceDetail(props: { id: string }) {
  const [device, setDevice] = createSignal<Device | null>(null);
  const [stats, setStats] = createSignal<Stats | null>(null);
  const [preds, setPreds] = createSignal<Prediction[]>([]);
  const [flows, setFlows] = createSignal<Page<Flow> | null>(null);
  const [explained, setExplained] = createSignal<Explanation | null>(null);
  const [command, setCommand] = createSignal<Command | null>(null);
  const [actionError, setActionError] = createSignal<unknown>(null);
  const [file, setFile] = createSignal<File | null>(null);

  const d = poll(async () => {
    setDevice(await api<Device>(`/devices/${props.id}`));
    setStats(await api<Stats>(`/devices/${props.id}/stats`));
  }, 15_000);
  const p = poll(async () => setPreds((await api<Page<Prediction>>(`/predictions/${props.id}?size=20`)).items), 10_000);
  const f = poll(async () => setFlows(await api<Page<Flow>>(`/traffic/${props.id}?size=20`)), 30_000);

  // Live chart: the device's scores as they arrive.
  const xs: number[] = [];
  const ys: number[] = [];
  const marks: (number | null)[] = [];
  const [tick, setTick] = createSignal(0);
  const [liveOpen, setLiveOpen] = createSignal(false);
  const sub = subscribe(
    `device/${props.id}`,
    (e) => {
      if (e.type !== "prediction") return;
      xs.push(new Date(e.data.timestamp).getTime() / 1000);
      ys.push(e.data.score);
      marks.push(e.data.label === "attack" ? e.data.score : null);
      if (xs.length > LIVE_POINTS) {
        xs.shift();
        ys.shift();
        marks.shift();
      }
      setTick(tick() + 1);
    },
    setLiveOpen,
  );
  onCleanup(() => sub.close());
  const liveData = () => {
    tick();
    // uPlot wants ascending x; events from several windows may interleave.
    const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
    return [order.map((i) => xs[i]), order.map((i) => ys[i]), order.map((i) => marks[i])] as any;
  };

  // A command's progress: polled until the agent reports it done or failed.
  let follow: ReturnType<typeof setInterval> | undefined;
  onCleanup(() => clearInterval(follow));
  const track = (c: Command) => {
    setCommand(c);
    clearInterval(follow);
    follow = setInterval(async () => {
      try {
        const now = await api<Command>(`/commands/${c.id}`);
        setCommand(now);
        if (now.status === "done" || now.status === "failed") clearInterval(follow);
      } catch (e) {
        setActionError(e);
        clearInterval(follow);
      }
    }, 2000);
  };
  const act = async (what: "start" | "stop") => {
    setActionError(null);
    try {
      track(await api<Command>(`/devices/${props.id}/${what}`, { method: "POST" }));
    } catch (e) {
      setActionError(e);
    }
  };
  const upload = async (e: Event) => {
    e.preventDefault();
    const fl = file();
    if (!fl) return;
    setActionError(null);
    try {
      track(await api<Command>(`/traffic/upload-pcap?device_id=${props.id}`, { method: "POST", raw: fl, contentType: "application/vnd.tcpdump.pcap" }));
    } catch (err) {
      setActionError(err);
    }
  };
  const explain = async (id: string) => {
    setActionError(null);
    try {
      setExplained(await api<Explanation>(`/predictions/${id}/explain`));
    } catch (e) {
      setExplained(null);
      setActionError(e);
    }
  };
  const flowCell = (fl: Flow, index: number) => {
    const v = fl.features[index];
    return v === undefined ? "—" : Number.isInteger(v) ? String(v) : v.toFixed(2);
  };

  return (
    <section>
      <p>
        <a href="#/devices">← Devices</a>
      </p>
      <h1>{device()?.name ?? "Device"}</h1>
      <ErrorLine error={d.error() ?? p.error() ?? f.error()} />
      <Show when={device()}>
        {(dev) => (
          <div class="row">
            <Badge kind={dev().status} />
            <span>
              <code>{dev().ip_address}</code> · {dev().device_type.replace(/_/g, " ")} · source {dev().traffic_source.replace(/_/g, " ")} · last seen {ago(dev().last_seen_at)}
            </span>
          </div>
        )}
      </Show>
      <div class="cards">
        <div class="card"><div class="label">Flows</div><div class="value">{stats()?.flows_total ?? "—"}</div></div>
        <div class="card"><div class="label">Predictions</div><div class="value">{stats()?.predictions_total ?? "—"}</div></div>
        <div class="card"><div class="label">Attack windows</div><div class="value">{stats()?.attacks_total ?? "—"}</div></div>
        <div class="card"><div class="label">Threats today</div><div class="value">{stats()?.threats_today ?? "—"}</div></div>
        <div class="card"><div class="label">Open alerts</div><div class="value">{stats()?.alerts_unacknowledged ?? "—"}</div></div>
      </div>
      <Show when={can("operator")}>
        <div class="panel">
          <h2>Monitoring and replay</h2>
          <div class="row">
            <button onClick={() => act("start")}>Start monitoring</button>
            <button class="secondary" onClick={() => act("stop")}>Stop monitoring</button>
            <form class="row" onSubmit={upload}>
              <Field label="Capture to replay (pcap)">
                <input type="file" accept=".pcap,.pcapng,.cap" onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
              </Field>
              <button type="submit" disabled={!file()}>Upload and replay</button>
            </form>
          </div>
          <Show when={command()}>
            {(c) => (
              <p role="status">
                Command <code>{c().command}</code>: <Badge kind={c().status === "done" ? "completed" : c().status} /> {c().result ?? ""} <span class="muted">({ago(c().updated_at)})</span>
              </p>
            )}
          </Show>
          <ErrorLine error={actionError()} />
        </div>
      </Show>
      <div class="grid">
        <div class="panel">
          <h2>Live score</h2>
          <p class="muted">{liveOpen() ? "Connected: scores appear as the agent makes them." : "Connecting…"}</p>
          <Chart title="This device's prediction scores as they arrive" series={[{ label: "score", color: "--score" }, { label: "attack", color: "--attack", points: true }]} data={liveData} yRange={[0, 1]} />
        </div>
        <Show when={explained()}>
          {(e) => (
            <div class="panel" aria-live="polite">
              <h2>Why {e().label === "attack" ? "flagged" : "benign"} (score {num(e().score)})</h2>
              <p class="muted">The features that moved this window's score most: the change of the attack probability attributed to each (Shapley values).</p>
              <div class="bars">
                <For each={bars(e())}>
                  {(b) => {
                    const max = Math.max(...bars(e()).map((x) => Math.abs(x.importance)), 1e-9);
                    return (
                      <div class="bar">
                        <span title={b.feature}>{b.feature}</span>
                        <span class="track">
                          <span class="fill" classList={{ neg: b.importance < 0 }} style={{ width: `${(100 * Math.abs(b.importance)) / max}%`, display: "block" }} />
                        </span>
                        <span>{num(b.importance, 3)}</span>
                      </div>
                    );
                  }}
                </For>
              </div>
            </div>
          )}
        </Show>
      </div>
      <h2>Recent predictions</h2>
      <div class="table-wrap">
        <table>
          <thead>
            <tr><th scope="col">Time</th><th scope="col">Label</th><th scope="col">Score</th><th scope="col">Family</th><th scope="col">Confidence</th><th scope="col">Model</th><th scope="col">Explanation</th></tr>
          </thead>
          <tbody>
            <For each={preds()}>
              {(x) => (
                <tr classList={{ attack: x.label === "attack" }} data-id={x.id}>
                  <td>{when(x.timestamp)}</td>
                  <td><Badge kind={x.label} />{x.attack_session_id ? " (simulated)" : ""}</td>
                  <td>{num(x.score)}</td>
                  <td>{x.label === "attack" ? family(x.attack_type) : "—"}</td>
                  <td>{pct(x.confidence)}</td>
                  <td><code>{x.model_version}</code></td>
                  <td>
                    <Show when={x.feature_importance} fallback={<span class="muted" title="Agents do not explain their windows yet; the hub's /predict does.">none</span>}>
                      <button class="secondary" onClick={() => explain(x.id)}>Explain</button>
                    </Show>
                  </td>
                </tr>
              )}
            </For>
          </tbody>
        </table>
      </div>
      <h2>Flows</h2>
      <div class="row">
        <p class="muted">{flows() ? `${flows()!.total} flows stored; the latest 20:` : ""}</p>
        <button class="secondary" onClick={() => download(`/traffic/${props.id}/export?limit=100000`, `flows-${props.id}.csv`).catch(setActionError)}>
          Export CSV
        </button>
      </div>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Source</th>
              <For each={FLOW_FEATURES}>{([, n]) => <th scope="col">{n}</th>}</For>
            </tr>
          </thead>
          <tbody>
            <For each={flows()?.items ?? []}>
              {(fl) => (
                <tr>
                  <td>{when(fl.timestamp)}</td>
                  <td>{fl.source_type}</td>
                  <For each={FLOW_FEATURES}>{([i]) => <td>{flowCell(fl, i)}</td>}</For>
                </tr>
              )}
            </For>
          </tbody>
        </table>
      </div>
    </section>
  );
}
