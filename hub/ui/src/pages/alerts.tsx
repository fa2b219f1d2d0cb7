// Alerts: filter, acknowledge, and resolve as confirmed or as a false positive. A verdict's
// label goes to the owning agent's local training set (federated learning).
import { createSignal, For, onCleanup, Show } from "solid-js";
import { api, can, Page, qs, subscribe } from "../api";
import { Badge, ErrorLine, Field, Pager, poll, when } from "../ui";
import type { Alert } from "./dashboard";

interface Resolved extends Alert {
  windows_labelled: number;
  label_sent: boolean;
}

/** What became of an alert: the hub records "none" for an alert nobody has acted on yet. */
function stateOf(a: Alert): string {
  if (a.action_taken && a.action_taken !== "none") return a.action_taken.replace(/_/g, " ");
  return a.is_acknowledged ? "acknowledged" : "open";
}

export default function Alerts() {
  const [severity, setSeverity] = createSignal("");
  const [state, setState] = createSignal("false");
  const [page, setPage] = createSignal(1);
  const [alerts, setAlerts] = createSignal<Page<Alert> | null>(null);
  const [selected, setSelected] = createSignal<Set<string>>(new Set());
  const [busy, setBusy] = createSignal(false);
  const [error, setError] = createSignal<unknown>(null);
  const [notice, setNotice] = createSignal("");
  const size = 50;

  const load = async () => {
    setAlerts(await api<Page<Alert>>("/alerts" + qs({ severity: severity(), acknowledged: state(), page: page(), size })));
  };
  const p = poll(load, 15_000);
  // New alerts appear without waiting for the next poll.
  const sub = subscribe("alerts", (e) => {
    if (e.type === "alert" && page() === 1) p.reload();
  });
  onCleanup(() => sub.close());

  const toggle = (id: string, on: boolean) => {
    const s = new Set(selected());
    if (on) s.add(id);
    else s.delete(id);
    setSelected(s);
  };
  const allOnPage = () => (alerts()?.items ?? []).every((a) => selected().has(a.id)) && (alerts()?.items.length ?? 0) > 0;
  const selectAll = (on: boolean) => setSelected(new Set(on ? (alerts()?.items ?? []).map((a) => a.id) : []));

  /** Runs `one` on each id in turn; reports how many went through and the first error. */
  const each = async (ids: string[], verb: string, one: (id: string) => Promise<string | void>) => {
    setBusy(true);
    setError(null);
    setNotice("");
    let ok = 0;
    const extra: string[] = [];
    try {
      for (const id of ids) {
        const note = await one(id);
        if (note) extra.push(note);
        ok++;
      }
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
      setSelected(new Set<string>());
      setNotice(`${ok} of ${ids.length} alerts ${verb}.${extra.length ? " " + extra.join(" ") : ""}`);
      p.reload();
    }
  };
  const acknowledge = (ids: string[]) => each(ids, "acknowledged", async (id) => void (await api(`/alerts/${id}/acknowledge`, { method: "PATCH" })));
  const resolve = (ids: string[], verdict: "false_positive" | "confirmed") =>
    each(ids, verdict === "false_positive" ? "resolved as false positives" : "resolved as confirmed attacks", async (id) => {
      const r = await api<Resolved>(`/alerts/${id}/resolve`, { method: "PATCH", body: { verdict } });
      return r.label_sent ? "" : `(${r.windows_labelled} windows; label not sent: the agent is unknown.)`;
    });
  const ids = () => [...selected()];

  return (
    <section>
      <h1>Alerts</h1>
      <div class="row">
        <Field label="Severity">
          <select value={severity()} onChange={(e) => { setSeverity(e.currentTarget.value); setPage(1); p.reload(); }}>
            <option value="">any</option>
            <For each={["low", "medium", "high", "critical"]}>{(s) => <option value={s}>{s}</option>}</For>
          </select>
        </Field>
        <Field label="Status">
          <select value={state()} onChange={(e) => { setState(e.currentTarget.value); setPage(1); p.reload(); }}>
            <option value="false">open</option>
            <option value="true">acknowledged or resolved</option>
            <option value="">all</option>
          </select>
        </Field>
      </div>
      <Show when={can("operator")}>
        <div class="row" role="group" aria-label="Bulk actions on the selected alerts">
          <span class="muted">{selected().size} selected:</span>
          <button disabled={busy() || !selected().size} onClick={() => acknowledge(ids())}>Acknowledge selected</button>
          <button class="secondary" disabled={busy() || !selected().size} onClick={() => resolve(ids(), "false_positive")}>Selected are false positives</button>
          <button class="secondary" disabled={busy() || !selected().size} onClick={() => resolve(ids(), "confirmed")}>Selected are confirmed attacks</button>
        </div>
      </Show>
      <ErrorLine error={p.error() ?? error()} />
      <Show when={notice()}>
        <p class="notice" role="status">{notice()}</p>
      </Show>
      <p class="muted" data-testid="alert-count">{alerts() ? `${alerts()!.total} alerts` : "Loading…"}</p>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <Show when={can("operator")}>
                <th scope="col">
                  <input type="checkbox" aria-label="Select every alert on this page" checked={allOnPage()} onChange={(e) => selectAll(e.currentTarget.checked)} />
                </th>
              </Show>
              <th scope="col">Time</th><th scope="col">Severity</th><th scope="col">Type</th><th scope="col">Message</th><th scope="col">Device</th><th scope="col">State</th>
              <Show when={can("operator")}><th scope="col">Actions</th></Show>
            </tr>
          </thead>
          <tbody>
            <For each={alerts()?.items ?? []}>
              {(a) => (
                <tr data-alert={a.id}>
                  <Show when={can("operator")}>
                    <td>
                      <input type="checkbox" aria-label={`Select alert: ${a.message}`} checked={selected().has(a.id)} onChange={(e) => toggle(a.id, e.currentTarget.checked)} />
                    </td>
                  </Show>
                  <td>{when(a.timestamp)}</td>
                  <td><Badge kind={a.severity} /></td>
                  <td>{a.alert_type.replace(/_/g, " ")}</td>
                  <td style={{ "white-space": "normal" }}>{a.message}</td>
                  <td><a href={`#/devices/${a.device_id}`}>device</a></td>
                  <td>{stateOf(a)}</td>
                  <Show when={can("operator")}>
                    <td class="row">
                      <Show when={!a.is_acknowledged}>
                        <button class="secondary" disabled={busy()} onClick={() => acknowledge([a.id])}>Acknowledge</button>
                      </Show>
                      <Show when={!a.action_taken?.startsWith("resolved")}>
                        <button class="secondary" disabled={busy()} onClick={() => resolve([a.id], "false_positive")}>False positive</button>
                        <button class="secondary" disabled={busy()} onClick={() => resolve([a.id], "confirmed")}>Confirm</button>
                      </Show>
                    </td>
                  </Show>
                </tr>
              )}
            </For>
          </tbody>
        </table>
      </div>
      <Pager page={page()} total={alerts()?.total ?? 0} size={size} noun="alerts" onPage={(n) => { setPage(n); p.reload(); }} />
    </section>
  );
}
