// The morning view: threat level, counts, score timelines, families seen, every device as a
// tile, latest alerts. Polls the API and follows `/ws/live` for the live chart.
import { createSignal, For, onCleanup, Show } from "solid-js";
import { api, Page, subscribe } from "../api";
import { ago, Badge, Chart, ErrorLine, family, pct, poll } from "../ui";

interface Stats {
  threat_level: string;
  total_devices: number;
  active_devices: number;
  attacks_today: number;
  predictions_today: number;
  benign_rate: number;
  unacknowledged_alerts: number;
}
interface Point {
  bucket: string;
  predictions: number;
  attacks: number;
  avg_score: number;
  max_score: number;
}
interface Share {
  attack_type: string;
  count: number;
}
export interface Health {
  id: string;
  name: string;
  device_type: string;
  status: string;
  last_seen_at: string | null;
  attacks_24h: number;
  unacknowledged_alerts: number;
  last_score: number | null;
}
export interface Alert {
  id: string;
  device_id: string;
  prediction_id: string | null;
  alert_type: string;
  severity: string;
  message: string;
  is_acknowledged: boolean;
  action_taken: string | null;
  timestamp: string;
}

const LIVE_SECONDS = 300;

export default function Dashboard() {
  const [stats, setStats] = createSignal<Stats | null>(null);
  const [timeline, setTimeline] = createSignal<Point[]>([]);
  const [shares, setShares] = createSignal<Share[]>([]);
  const [health, setHealth] = createSignal<Health[]>([]);
  const [alerts, setAlerts] = createSignal<Alert[]>([]);

  const s = poll(async () => setStats(await api<Stats>("/dashboard/stats")), 10_000);
  const t = poll(async () => setTimeline(await api<Point[]>("/dashboard/timeline?hours=1&bucket_minutes=1")), 15_000);
  const d = poll(async () => setShares(await api<Share[]>("/dashboard/attack-distribution?hours=24")), 30_000);
  const h = poll(async () => setHealth(await api<Health[]>("/dashboard/device-health")), 10_000);
  const a = poll(async () => setAlerts((await api<Page<Alert>>("/alerts?size=8")).items), 10_000);

  // The live chart: the highest score per second over the last five minutes, from the stream.
  const perSecond = new Map<number, { max: number; attack: boolean }>();
  const [liveTick, setLiveTick] = createSignal(0);
  const sub = subscribe("live", (e) => {
    if (e.type !== "prediction") return;
    const sec = Math.floor(new Date(e.data.timestamp).getTime() / 1000);
    const cur = perSecond.get(sec) ?? { max: 0, attack: false };
    cur.max = Math.max(cur.max, e.data.score);
    cur.attack ||= e.data.label === "attack";
    perSecond.set(sec, cur);
  });
  const redraw = setInterval(() => {
    const oldest = Date.now() / 1000 - LIVE_SECONDS;
    for (const k of perSecond.keys()) if (k < oldest) perSecond.delete(k);
    setLiveTick(liveTick() + 1);
  }, 1000);
  onCleanup(() => {
    sub.close();
    clearInterval(redraw);
  });
  const liveData = () => {
    liveTick();
    const keys = [...perSecond.keys()].sort((x, y) => x - y);
    return [keys, keys.map((k) => perSecond.get(k)!.max), keys.map((k) => (perSecond.get(k)!.attack ? perSecond.get(k)!.max : null))] as any;
  };
  const hourData = () => {
    const p = timeline();
    return [p.map((x) => new Date(x.bucket).getTime() / 1000), p.map((x) => x.avg_score), p.map((x) => x.max_score)] as any;
  };
  const totalShares = () => shares().reduce((n, x) => n + x.count, 0);

  return (
    <section>
      <h1>Dashboard</h1>
      <ErrorLine error={s.error() ?? t.error() ?? d.error() ?? h.error() ?? a.error()} />
      <div class="cards" data-testid="stats">
        <div class="card">
          <div class="label">Threat level</div>
          <div class="value">
            <Badge kind={stats()?.threat_level ?? "idle"}>{stats()?.threat_level ?? "—"}</Badge>
          </div>
        </div>
        <div class="card">
          <div class="label">Active devices</div>
          <div class="value" data-testid="active-devices">
            {stats() ? `${stats()!.active_devices} / ${stats()!.total_devices}` : "—"}
          </div>
        </div>
        <div class="card">
          <div class="label">Attacks today</div>
          <div class="value" data-testid="attacks-today">{stats()?.attacks_today ?? "—"}</div>
        </div>
        <div class="card">
          <div class="label">Benign rate today</div>
          <div class="value">{pct(stats()?.benign_rate)}</div>
        </div>
        <div class="card">
          <div class="label">Unacknowledged alerts</div>
          <div class="value">
            <a href="#/alerts">{stats()?.unacknowledged_alerts ?? "—"}</a>
          </div>
        </div>
      </div>
      <div class="grid">
        <div class="panel">
          <h2>Live: highest score per second</h2>
          <Chart title="Highest prediction score per second over the last five minutes" series={[{ label: "max score", color: "--score" }, { label: "attack", color: "--attack", points: true }]} data={liveData} yRange={[0, 1]} />
        </div>
        <div class="panel">
          <h2>Last hour, per minute</h2>
          <Show when={timeline().length} fallback={<p class="muted">No prediction stamped within the last hour.</p>}>
            <Chart title="Average and highest score per minute over the last hour" series={[{ label: "average", color: "--score" }, { label: "highest", color: "--attack" }]} data={hourData} yRange={[0, 1]} />
          </Show>
        </div>
        <div class="panel">
          <h2>Attack families, last 24 h</h2>
          <Show when={shares().length} fallback={<p class="muted">No attack predicted in the last 24 hours.</p>}>
            <div class="bars">
              <For each={shares()}>
                {(x) => (
                  <div class="bar">
                    <span>{family(x.attack_type)}</span>
                    <span class="track">
                      <span class="fill" style={{ width: `${(100 * x.count) / Math.max(totalShares(), 1)}%`, display: "block" }} />
                    </span>
                    <span>{x.count}</span>
                  </div>
                )}
              </For>
            </div>
          </Show>
        </div>
        <div class="panel">
          <h2>Latest alerts</h2>
          <Show when={alerts().length} fallback={<p class="muted">No alert.</p>}>
            <ul>
              <For each={alerts()}>
                {(x) => (
                  <li>
                    <Badge kind={x.severity} /> {x.message} <span class="muted">{ago(x.timestamp)}</span>
                  </li>
                )}
              </For>
            </ul>
          </Show>
        </div>
      </div>
      <h2>Device health</h2>
      <p class="muted">Every device, coloured by status: green online, red under attack, dark red quarantined, grey offline.</p>
      <Show when={health().length} fallback={<p class="muted">No device yet: enroll an agent (Settings & fleet).</p>}>
        <div class="tiles" data-testid="health-map">
          <For each={health()}>
            {(x) => (
              <a class={`tile s-${x.status}`} href={`#/devices/${x.id}`} title={`${x.name}: ${x.status}, ${x.attacks_24h} attacks in 24 h, last seen ${ago(x.last_seen_at)}`}>
                {x.name}
                <br />
                <span class="muted">{x.status.replace(/_/g, " ")}</span>
              </a>
            )}
          </For>
        </div>
      </Show>
    </section>
  );
}
