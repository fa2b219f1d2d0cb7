// Attack simulation: build a session of attack steps against one device, have the device's agent
// run it, follow it live and read what the detector caught, step by step.
import { createEffect, createSignal, For, on, onCleanup, onMount, Show } from "solid-js";
import { createStore } from "solid-js/store";
import { api, can, openBlob, Page, qs, subscribe } from "../api";
import { Badge, ErrorLine, Field, num, Pager, pct, poll, when } from "../ui";

interface Device { id: string; name: string; ip_address: string; agent_id: string | null }
interface AttackTypeInfo { attack_type: string; name: string; description: string; variants: string[] }
/** A step as the API takes it (`StepIn`). */
interface StepIn {
  attack_type: string; variant?: string; duration_seconds: number; intensity: number;
  adversarial_enabled: boolean; adversarial_epsilon?: number;
}
/** A stored step (`AttackStep`): the metrics are null until the agent reports the step's end. */
interface Step {
  step_order: number; attack_type: string; variant: string | null; duration_seconds: number; intensity: number;
  adversarial_enabled: boolean; adversarial_epsilon: number | null; status: string; detected: boolean | null;
  windows: number | null; attack_windows: number | null; detection_rate: number | null; clean_detection_rate: number | null;
  avg_score: number | null; avg_confidence: number | null; family_accuracy: number | null;
  detection_latency_ms: number | null; auto_action_taken: string | null; message: string | null;
}
/** The aggregate the hub writes when a session ends (`crate::attack::results`). */
interface Results {
  steps: number; detected_steps: number; windows: number; attack_windows: number; detection_rate: number | null;
  clean_steps_detection_rate: number | null; adversarial_steps_detection_rate: number | null;
  adversarial_steps_unperturbed_detection_rate: number | null; mean_detection_latency_ms: number | null;
}
interface Session {
  id: string; device_id: string; status: string; progress_pct: number; current_step: number | null;
  results: Results | null; pipeline_config: { steps?: unknown[] }; started_at: string | null;
  completed_at: string | null; created_at: string; model_version: string | null; message: string | null;
}
interface SessionOut extends Session { steps: Step[] }
/** `attack_progress` events on `/ws/attacks/{id}`. */
interface Progress { session_id: string; event: string; status: string; progress_pct: number; step?: number; step_status?: string }

const PAGE_SIZE = 20;
const ms = (x: number | null) => (x === null ? "—" : `${x.toFixed(0)} ms`);
const percent = (x: number) => `${x.toFixed(0)} %`;
// The hub refuses to start a session that is running or already completed.
const startable = (s: Session) => s.status !== "running" && s.status !== "completed";

export default function Attacks() {
  const [devices, setDevices] = createSignal<Device[]>([]);
  const [types, setTypes] = createSignal<AttackTypeInfo[]>([]);
  const [loadError, setLoadError] = createSignal<unknown>(null);
  const [selected, setSelected] = createSignal<SessionOut | null>(null);
  const [actionError, setActionError] = createSignal<unknown>(null);
  const [notice, setNotice] = createSignal("");
  const [history, setHistory] = createSignal<Page<Session> | null>(null);
  const [page, setPage] = createSignal(1);
  const [historyError, setHistoryError] = createSignal<unknown>(null);
  const [liveError, setLiveError] = createSignal<unknown>(null);
  const [liveOpen, setLiveOpen] = createSignal(false);

  const deviceName = (id: string) => devices().find((d) => d.id === id)?.name ?? id.slice(0, 8);

  onMount(async () => {
    try {
      const [d, t] = await Promise.all([api<Page<Device>>("/devices?size=200"), api<AttackTypeInfo[]>("/attacks/types")]);
      setDevices(d.items);
      setTypes(t);
    } catch (e) {
      setLoadError(e);
    }
  });

  const loadHistory = async () => {
    try {
      setHistory(await api<Page<Session>>("/attacks/sessions" + qs({ page: page(), size: PAGE_SIZE })));
      setHistoryError(null);
    } catch (e) {
      setHistoryError(e);
    }
  };
  createEffect(on(page, loadHistory));

  const fetchSession = (id: string) => api<SessionOut>(`/attacks/sessions/${id}`);
  // Polling backs up the socket: an event lost while reconnecting must not freeze the view.
  const polled = poll(async () => {
    const s = selected();
    if (s?.status === "running") setSelected(await fetchSession(s.id));
    // Other sessions running meanwhile (another operator's) move on in the history too.
    if (history()?.items.some((x) => x.status === "running")) await loadHistory();
  }, 3000);
  // The history's status column follows the selected session when it starts or ends.
  createEffect(on(() => selected()?.status, loadHistory, { defer: true }));

  // One socket for the selected session, replaced when another is selected.
  const onProgress = (p: Progress) => {
    const s = selected();
    if (!s || p.session_id !== s.id) return;
    setSelected({
      ...s,
      status: p.status,
      progress_pct: p.progress_pct,
      current_step: p.event === "step_started" && p.step !== undefined ? p.step : s.current_step,
      steps: s.steps.map((st) => (st.step_order === p.step && p.step_status ? { ...st, status: p.step_status } : st)),
    });
    // Ended steps and sessions carry metrics the event does not: fetch the whole row.
    if (p.event === "step_ended" || p.event === "session_ended") {
      fetchSession(s.id).then((fresh) => (setSelected(fresh), setLiveError(null)), setLiveError);
    }
  };
  createEffect(on(() => selected()?.id, (id) => {
    if (!id) return;
    const sub = subscribe(`attacks/${id}`, (e) => e.type === "attack_progress" && onProgress(e.data as Progress), setLiveOpen);
    onCleanup(() => sub.close());
  }));

  const act = async (f: () => Promise<void>) => {
    setActionError(null);
    setNotice("");
    try {
      await f();
    } catch (e) {
      setActionError(e);
    }
  };
  const select = (id: string) => act(async () => void setSelected(await fetchSession(id)));
  const start = (id: string) =>
    act(async () => {
      // The answer is the session (plus the agent command that runs it).
      setSelected(await api<SessionOut>(`/attacks/sessions/${id}/start`, { method: "POST" }));
      setNotice("Session sent to the device's agent.");
    });
  const stop = (id: string) =>
    act(async () => {
      await api(`/attacks/sessions/${id}/stop`, { method: "POST" });
      // The session ends when the agent reports it aborted, not now.
      setNotice("Stop sent to the agent; the session ends when the agent confirms.");
      if (selected()?.id === id) setSelected(await fetchSession(id));
    });
  const remove = (s: Session) =>
    act(async () => {
      if (!confirm(`Delete the session of ${when(s.created_at)} and its results?`)) return;
      await api(`/attacks/sessions/${s.id}`, { method: "DELETE" });
      if (selected()?.id === s.id) setSelected(null);
      await loadHistory();
    });
  const report = (id: string, format: "html" | "pdf") => act(() => openBlob(`/attacks/sessions/${id}/report?format=${format}`));

  return (
    <section>
      <h1>Attack simulation</h1>
      <p class="muted">
        The device's agent plays simulated attack traffic against it and scores it with its model. A simulation is a test: it raises no
        alert, changes no device status, and prevention rules only record what they would have done.
      </p>
      <ErrorLine error={loadError()} />
      <Show when={can("operator")}>
        <Builder devices={devices()} types={types()} onCreated={(s) => { setSelected(s); setNotice("Session created: start it when ready."); loadHistory(); }} />
      </Show>

      <Show when={notice()}>
        <p class="notice" role="status">{notice()}</p>
      </Show>
      <ErrorLine error={actionError()} />

      <Show when={selected()}>
        {(s) => (
          <div class="panel">
            <h2>
              Session on {deviceName(s().device_id)} <Badge kind={s().status} />
            </h2>
            <div class="row">
              <label class="field">
                <span>Progress: {percent(s().progress_pct)}{s().current_step ? ` — step ${s().current_step} of ${s().steps.length}` : ""}</span>
                <progress max={100} value={s().progress_pct} />
              </label>
              <Show when={can("operator") && startable(s())}>
                <button onClick={() => start(s().id)}>Start session</button>
              </Show>
              <Show when={can("operator") && s().status === "running"}>
                <button class="danger" onClick={() => stop(s().id)}>Stop session</button>
              </Show>
              <button class="secondary" onClick={() => report(s().id, "html")}>HTML report</button>
              <button class="secondary" onClick={() => report(s().id, "pdf")}>PDF report</button>
            </div>
            <p class="muted">
              Created {when(s().created_at)} · started {when(s().started_at)} · ended {s().completed_at ? when(s().completed_at) : "—"}
              {s().model_version ? ` · model ${s().model_version}` : ""}
              <Show when={s().status === "running"}> · live updates {liveOpen() ? "connected" : "reconnecting…"}</Show>
            </p>
            <Show when={s().message}><p>{s().message}</p></Show>
            <ErrorLine error={liveError() ?? polled.error()} />
            <Show when={s().results}>{(r) => <ResultCards r={r()} />}</Show>
            <StepTable steps={s().steps} />
          </div>
        )}
      </Show>

      <h2>History</h2>
      <ErrorLine error={historyError()} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr><th>Created</th><th>Device</th><th>Steps</th><th>Status</th><th>Progress</th><th>Detection rate</th><th>Actions</th></tr>
          </thead>
          <tbody>
            <For each={history()?.items ?? []} fallback={<tr><td colspan={7} class="muted">No sessions yet.</td></tr>}>
              {(s) => (
                <tr onClick={() => select(s.id)} style={{ cursor: "pointer", "font-weight": selected()?.id === s.id ? 600 : undefined }}>
                  <td>{when(s.created_at)}</td>
                  <td>{deviceName(s.device_id)}</td>
                  <td>{s.pipeline_config.steps?.length ?? "—"}</td>
                  <td><Badge kind={s.status} /></td>
                  <td>{percent(s.progress_pct)}</td>
                  <td>{pct(s.results?.detection_rate)}</td>
                  {/* Buttons stop the click so that acting on a row does not also select it. */}
                  <td onClick={(e) => e.stopPropagation()}>
                    <div class="row">
                    <button class="secondary" onClick={() => select(s.id)}>View</button>
                    <Show when={can("operator") && s.status === "running"}>
                      <button class="danger" onClick={() => stop(s.id)}>Stop</button>
                    </Show>
                    <Show when={can("operator") && s.status !== "running"}>
                      <button class="secondary" onClick={() => remove(s)}>Delete</button>
                    </Show>
                    </div>
                  </td>
                </tr>
              )}
            </For>
          </tbody>
        </table>
      </div>
      <Pager page={page()} total={history()?.total ?? 0} size={PAGE_SIZE} noun="sessions" onPage={setPage} />
    </section>
  );
}

function Builder(props: { devices: Device[]; types: AttackTypeInfo[]; onCreated: (s: SessionOut) => void }) {
  const [device, setDevice] = createSignal("");
  const [steps, setSteps] = createSignal<StepIn[]>([]);
  const [gap, setGap] = createSignal(10);
  // The step being put together, with the API's defaults ("" = first type, default variant).
  const [d, setD] = createStore({ type: "", variant: "", duration: 30, intensity: 0.7, adversarial: false, epsilon: 0.1 });
  const [error, setError] = createSignal<unknown>(null);
  const [busy, setBusy] = createSignal(false);

  const typeInfo = () => props.types.find((t) => t.attack_type === (d.type || props.types[0]?.attack_type));
  // Same arithmetic as the hub's check (steps plus the gaps between them, at most 6 h).
  const total = () => steps().reduce((n, s) => n + s.duration_seconds, 0) + gap() * Math.max(steps().length - 1, 0);

  const addStep = () => {
    const t = typeInfo();
    if (!t) return;
    const step: StepIn = { attack_type: t.attack_type, duration_seconds: d.duration, intensity: d.intensity, adversarial_enabled: d.adversarial };
    if (d.variant && t.variants.includes(d.variant)) step.variant = d.variant;
    // The API refuses an epsilon without adversarial_enabled, so it is sent only with it.
    if (d.adversarial) step.adversarial_epsilon = d.epsilon;
    setSteps([...steps(), step]);
  };
  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      const s = await api<SessionOut>("/attacks/sessions", { method: "POST", body: { device_id: device(), steps: steps(), gap_seconds: gap() } });
      setSteps([]);
      props.onCreated(s);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const typeName = (t: string) => props.types.find((x) => x.attack_type === t)?.name ?? t;

  return (
    <form class="panel" onSubmit={create}>
      <h2>New session</h2>
      <div class="row">
        <Field label="Device" hint="Its agent must be online to start the session; IPv4 devices only.">
          <select required value={device()} onChange={(e) => setDevice(e.currentTarget.value)}>
            <option value="">Choose a device…</option>
            <For each={props.devices}>{(dev) => <option value={dev.id}>{dev.name} ({dev.ip_address})</option>}</For>
          </select>
        </Field>
        <Field label="Gap between steps (s)" hint="The device's own traffic alone, 0–3600 s.">
          <input type="number" min={0} max={3600} value={gap()} onInput={(e) => setGap(e.currentTarget.valueAsNumber)} />
        </Field>
      </div>
      <fieldset>
        <legend>Add a step</legend>
        <div class="row">
          <Field label="Attack type" hint={typeInfo()?.description}>
            <select value={typeInfo()?.attack_type ?? ""} onChange={(e) => setD({ type: e.currentTarget.value, variant: "" })}>
              <For each={props.types}>{(t) => <option value={t.attack_type}>{t.name}</option>}</For>
            </select>
          </Field>
          <Show when={typeInfo()?.variants.length}>
            <Field label="Variant">
              <select value={d.variant} onChange={(e) => setD("variant", e.currentTarget.value)}>
                <option value="">default</option>
                <For each={typeInfo()?.variants}>{(v) => <option value={v}>{v.replace(/_/g, " ")}</option>}</For>
              </select>
            </Field>
          </Show>
          <Field label="Duration (s)"><input type="number" min={1} max={86400} value={d.duration} onInput={(e) => setD("duration", e.currentTarget.valueAsNumber)} /></Field>
          <Field label="Intensity (0–1)"><input type="number" min={0} max={1} step={0.05} value={d.intensity} onInput={(e) => setD("intensity", e.currentTarget.valueAsNumber)} /></Field>
          <Field label="Adversarial (FGSM)"><input type="checkbox" checked={d.adversarial} onChange={(e) => setD("adversarial", e.currentTarget.checked)} /></Field>
          <Show when={d.adversarial}>
            <Field label="Epsilon (0–1]"><input type="number" min={0.01} max={1} step={0.01} value={d.epsilon} onInput={(e) => setD("epsilon", e.currentTarget.valueAsNumber)} /></Field>
          </Show>
          <button type="button" class="secondary" disabled={!typeInfo()} onClick={addStep}>Add step</button>
        </div>
      </fieldset>
      <Show when={steps().length} fallback={<p class="muted">No steps yet: add at least one (at most 20).</p>}>
        <ol>
          <For each={steps()}>
            {(s, i) => (
              <li>
                {typeName(s.attack_type)}{s.variant ? ` (${s.variant.replace(/_/g, " ")})` : ""} — {s.duration_seconds} s at intensity {s.intensity}
                {s.adversarial_enabled ? `, adversarial ε ${s.adversarial_epsilon}` : ""}{" "}
                <button type="button" class="secondary" aria-label={`Remove step ${i() + 1}`} onClick={() => setSteps(steps().filter((_, j) => j !== i()))}>
                  Remove
                </button>
              </li>
            )}
          </For>
        </ol>
        <p class="muted">About {Math.ceil(total() / 60)} min in all (at most 6 h).</p>
      </Show>
      <button type="submit" disabled={busy() || !device() || !steps().length}>Create session</button>
      <ErrorLine error={error()} />
    </form>
  );
}

function ResultCards(props: { r: Results }) {
  const r = () => props.r;
  return (
    <div class="cards">
      <div class="card"><div class="value">{pct(r().detection_rate)}</div><div class="label">windows flagged ({r().attack_windows} of {r().windows})</div></div>
      <div class="card"><div class="value">{r().detected_steps} / {r().steps}</div><div class="label">steps detected</div></div>
      <div class="card"><div class="value">{pct(r().clean_steps_detection_rate)}</div><div class="label">detection, plain steps</div></div>
      <Show when={r().adversarial_steps_detection_rate !== null}>
        <div class="card">
          <div class="value">{pct(r().adversarial_steps_detection_rate)}</div>
          <div class="label">adversarial steps (unperturbed {pct(r().adversarial_steps_unperturbed_detection_rate)})</div>
        </div>
      </Show>
      <div class="card"><div class="value">{ms(r().mean_detection_latency_ms)}</div><div class="label">mean time to detect</div></div>
    </div>
  );
}

function StepTable(props: { steps: Step[] }) {
  const label = (x: string) => x.replace(/_/g, " ");
  // Focusable so that keyboard users can scroll the wide table (it holds no control).
  return (
    <div class="table-wrap" tabindex="0" role="region" aria-label="Steps">
      <table>
        <caption class="muted" style={{ "text-align": "left" }}>Steps and what the detector caught</caption>
        <thead>
          <tr>
            <th>#</th><th>Attack</th><th>Status</th><th>Windows flagged</th><th>Detection rate</th><th>Avg score</th>
            <th>Avg confidence</th><th>Family accuracy</th><th>Time to detect</th><th>Prevention (simulated)</th><th>Note</th>
          </tr>
        </thead>
        <tbody>
          <For each={props.steps}>
            {(s) => (
              <tr classList={{ attack: s.detected === true }}>
                <td>{s.step_order}</td>
                <td>
                  {label(s.attack_type)}{s.variant ? ` (${label(s.variant)})` : ""} · {s.duration_seconds} s · intensity {s.intensity}
                  {s.adversarial_enabled ? ` · adversarial ε ${s.adversarial_epsilon}` : ""}
                </td>
                <td><Badge kind={s.status} /></td>
                <td>{s.windows === null ? "—" : `${s.attack_windows ?? 0} of ${s.windows}`}</td>
                {/* Adversarial steps: the unperturbed rate shows what the FGSM perturbation took away. */}
                <td>{pct(s.detection_rate)}{s.adversarial_enabled && s.clean_detection_rate !== null ? ` (unperturbed ${pct(s.clean_detection_rate)})` : ""}</td>
                <td>{num(s.avg_score)}</td>
                <td>{pct(s.avg_confidence)}</td>
                <td>{pct(s.family_accuracy)}</td>
                <td>{ms(s.detection_latency_ms)}</td>
                <td>{s.auto_action_taken ? label(s.auto_action_taken.replace(/^dry_run:/, "dry run: ")) : "—"}</td>
                <td style={{ "white-space": "normal" }}>{s.message ?? ""}</td>
              </tr>
            )}
          </For>
        </tbody>
      </table>
    </div>
  );
}
