// The `/ws/live` stream. Events are buffered and rendered four times a second into a bounded
// list, so the page stays responsive at a thousand events per second.
import { createSignal, For, onCleanup, Show } from "solid-js";
import { subscribe } from "../api";
import { Badge, family, Field, num } from "../ui";

interface Row {
  key: number;
  /** The prediction's or alert's id. */
  id: string;
  type: string;
  time: string;
  device: string;
  deviceId: string;
  label: string;
  score: number | null;
  family: string | null;
  text: string;
}

const SHOWN = 200;
const FLUSH_MS = 250;

function rowOf(key: number, type: string, d: any): Row {
  if (type === "prediction") {
    return {
      key,
      id: d.id,
      type,
      time: d.timestamp,
      device: d.device_name,
      deviceId: d.device_id,
      label: d.label,
      score: d.score,
      family: d.label === "attack" ? d.attack_type : null,
      text: d.simulated ? "simulated attack session" : `model ${d.model_version}`,
    };
  }
  return {
    key,
    id: d.id ?? "",
    type,
    time: d.timestamp ?? new Date().toISOString(),
    device: d.device_id ? String(d.device_id).slice(0, 8) : "",
    deviceId: d.device_id ?? "",
    label: type,
    score: null,
    family: null,
    text: d.message ?? d.action_executed ?? JSON.stringify(d).slice(0, 120),
  };
}

export default function Live() {
  const [rows, setRows] = createSignal<Row[]>([]);
  const [paused, setPaused] = createSignal(false);
  const [rate, setRate] = createSignal(0);
  const [open, setOpen] = createSignal(false);
  const [device, setDevice] = createSignal("");
  const [fam, setFam] = createSignal("");
  const [attacksOnly, setAttacksOnly] = createSignal(false);
  let pending: Row[] = [];
  let counted = 0;
  let seq = 0;

  const keep = (r: Row) => {
    if (attacksOnly() && r.label !== "attack" && r.type === "prediction") return false;
    if (fam() && r.family !== fam()) return false;
    const dv = device().trim().toLowerCase();
    if (dv && !r.device.toLowerCase().includes(dv) && !r.deviceId.startsWith(dv)) return false;
    return true;
  };
  const sub = subscribe(
    "live",
    (e) => {
      counted++;
      if (paused()) return;
      const r = rowOf(seq++, e.type, e.data);
      if (keep(r)) {
        pending.push(r);
        if (pending.length > SHOWN) pending = pending.slice(-SHOWN);
      }
    },
    setOpen,
  );
  const flush = setInterval(() => {
    if (!pending.length) return;
    const fresh = pending.reverse();
    pending = [];
    setRows([...fresh, ...rows()].slice(0, SHOWN));
  }, FLUSH_MS);
  const meter = setInterval(() => {
    setRate(counted);
    counted = 0;
  }, 1000);
  onCleanup(() => {
    sub.close();
    clearInterval(flush);
    clearInterval(meter);
  });

  return (
    <section>
      <h1>Live monitor</h1>
      <div class="row">
        <Field label="Device (name or id)">
          <input value={device()} onInput={(e) => setDevice(e.currentTarget.value)} />
        </Field>
        <Field label="Family">
          <select value={fam()} onChange={(e) => setFam(e.currentTarget.value)}>
            <option value="">any</option>
            <For each={["dos_ddos", "iot_flood", "slow_rate", "scan", "brute_force", "botnet_c2", "exfiltration", "web_attack"]}>{(f) => <option value={f}>{family(f)}</option>}</For>
          </select>
        </Field>
        <label class="row">
          <input type="checkbox" checked={attacksOnly()} onChange={(e) => setAttacksOnly(e.currentTarget.checked)} /> Attacks only
        </label>
        <button onClick={() => setPaused(!paused())} aria-pressed={paused()}>
          {paused() ? "Resume" : "Pause"}
        </button>
        <button class="secondary" onClick={() => setRows([])}>
          Clear
        </button>
      </div>
      <p role="status" class="muted">
        {open() ? "Connected" : "Connecting…"} · <span data-testid="rate">{rate()}</span> events/s
        <Show when={paused()}> · paused (events are counted, not shown)</Show>
      </p>
      <div class="table-wrap">
        <table class="stream" aria-label="Live events, newest first">
          <thead>
            <tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Device</th><th scope="col">Score</th><th scope="col">Family</th><th scope="col">Detail</th></tr>
          </thead>
          <tbody data-testid="live-rows">
            <For each={rows()}>
              {(r) => (
                <tr classList={{ attack: r.label === "attack" }} data-id={r.id}>
                  <td>{new Date(r.time).toLocaleTimeString(undefined, { hour12: false })}</td>
                  <td><Badge kind={r.label} /></td>
                  <td>{r.deviceId ? <a href={`#/devices/${r.deviceId}`}>{r.device}</a> : r.device}</td>
                  <td>{r.score === null ? "" : num(r.score)}</td>
                  <td>{r.family ? family(r.family) : ""}</td>
                  <td>{r.text}</td>
                </tr>
              )}
            </For>
          </tbody>
        </table>
      </div>
    </section>
  );
}
