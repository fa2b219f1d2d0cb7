// Prevention: the rules agents (and, for webhooks, the hub) apply to detections, and the log of
// what they did. The log says plainly whether a measure was enforced or only a dry run.
import { createSignal, For, onCleanup, onMount, Show } from "solid-js";
import { createStore } from "solid-js/store";
import { api, can, Page, qs, subscribe } from "../api";
import { Badge, ErrorLine, Field, Pager, poll, when } from "../ui";

interface Device { id: string; name: string }
interface Rule {
  id: string; device_id: string | null; rule_name: string; threshold: number; action_type: string; is_enabled: boolean;
  cooldown_seconds: number; webhook_url: string | null; extra_config: Record<string, unknown> | null;
}
interface Log {
  id: string; rule_id: string | null; device_id: string; action_executed: string; success: boolean;
  details: Record<string, unknown> | null; timestamp: string;
}

const ACTIONS = ["block_ip", "rate_limit", "quarantine", "alert_only", "webhook"] as const;
const LOG_PAGE = 50;

interface Form {
  rule_name: string; device_id: string; threshold: number; action_type: string; is_enabled: boolean;
  cooldown_seconds: number; webhook_url: string;
  /** extra_config keys the agents read; "" = the agent's default (600 s, 50 packets/s). */
  duration: string; rate: string;
}
const blank = (): Form => ({
  rule_name: "", device_id: "", threshold: 0.5, action_type: "alert_only", is_enabled: true,
  cooldown_seconds: 60, webhook_url: "", duration: "", rate: "",
});

/**
 * How a log row's measure was carried out. The hub stores an agent's measure that was not
 * enforced as `dry_run:<action>` (details.enforced = false); alert_only has nothing to enforce;
 * webhooks are called by the hub itself.
 */
function mode(l: Log): "dry_run" | "enforced" | "alert_only" {
  if (l.action_executed.startsWith("dry_run:")) return "dry_run";
  if (l.action_executed === "alert_only") return "alert_only";
  return "enforced";
}

/** One line out of the details an agent (message, target, expiry) or the hub's webhook (url, status) wrote. */
function summary(d: Log["details"]): string {
  if (!d) return "";
  const parts: string[] = [];
  if (typeof d.message === "string" && d.message) parts.push(d.message);
  else if (d.target) parts.push(`target ${d.target}`);
  if (typeof d.url === "string") parts.push(`${d.url}${d.status ? ` → HTTP ${d.status}` : ""}`);
  if (typeof d.error === "string") parts.push(d.error);
  if (typeof d.expires_at === "string") parts.push(`until ${when(d.expires_at)}`);
  return parts.join(" · ");
}

export default function Prevention() {
  const [devices, setDevices] = createSignal<Device[]>([]);
  const [rules, setRules] = createSignal<Rule[]>([]);
  const [rulesError, setRulesError] = createSignal<unknown>(null);
  const [ruleError, setRuleError] = createSignal<unknown>(null);
  const [devicesError, setDevicesError] = createSignal<unknown>(null);
  const [form, setForm] = createStore<Form>(blank());
  const [editing, setEditing] = createSignal<Rule | null>(null);
  const [busy, setBusy] = createSignal(false);
  const [logs, setLogs] = createSignal<Page<Log> | null>(null);
  const [page, setPage] = createSignal(1);

  const deviceName = (id: string | null) => (id ? (devices().find((d) => d.id === id)?.name ?? id.slice(0, 8)) : "all devices");
  const ruleName = (id: string | null) => (id ? (rules().find((r) => r.id === id)?.rule_name ?? "deleted rule") : "—");

  const loadRules = async () => {
    try {
      // The API answers with every rule (an array); a paged answer is accepted too.
      const r = await api<Rule[] | Page<Rule>>("/prevention/rules");
      setRules(Array.isArray(r) ? r : r.items);
      setRulesError(null);
    } catch (e) {
      setRulesError(e);
    }
  };
  onMount(async () => {
    loadRules();
    try {
      setDevices((await api<Page<Device>>("/devices?size=200")).items);
    } catch (e) {
      setDevicesError(e);
    }
  });

  const logPoll = poll(async () => {
    setLogs(await api<Page<Log>>("/prevention/logs" + qs({ page: page(), size: LOG_PAGE })));
  }, 5000);
  // A burst of detections brings many events: one reload for the lot.
  let pending: ReturnType<typeof setTimeout> | undefined;
  const live = subscribe("live", (e) => {
    if (e.type !== "prevention" || pending) return;
    pending = setTimeout(() => {
      pending = undefined;
      logPoll.reload();
    }, 500);
  });
  onCleanup(() => {
    live.close();
    clearTimeout(pending);
  });
  const goPage = (p: number) => {
    setPage(p);
    logPoll.reload();
  };

  const act = async (f: () => Promise<void>) => {
    setRuleError(null);
    try {
      await f();
    } catch (e) {
      setRuleError(e);
    }
  };
  const replace = (r: Rule) => setRules(rules().map((x) => (x.id === r.id ? r : x)));
  const toggle = (r: Rule) =>
    act(async () => {
      replace(await api<Rule>(`/prevention/rules/${r.id}/toggle`, { method: "POST" }));
    });
  const remove = (r: Rule) =>
    act(async () => {
      if (!confirm(`Delete the rule "${r.rule_name}"?`)) return;
      await api(`/prevention/rules/${r.id}`, { method: "DELETE" });
      setRules(rules().filter((x) => x.id !== r.id));
    });
  const edit = (r: Rule) => {
    setEditing(r);
    const extra = r.extra_config ?? {};
    setForm({
      rule_name: r.rule_name, device_id: r.device_id ?? "", threshold: r.threshold, action_type: r.action_type,
      is_enabled: r.is_enabled, cooldown_seconds: r.cooldown_seconds, webhook_url: r.webhook_url ?? "",
      duration: extra.duration_seconds === undefined ? "" : String(extra.duration_seconds),
      rate: extra.rate_pps === undefined ? "" : String(extra.rate_pps),
    });
  };
  const cancel = () => {
    setEditing(null);
    setForm(blank());
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    await act(async () => {
      // Keep extra_config keys this form does not show; set or drop the two it does.
      const extra: Record<string, unknown> = { ...(editing()?.extra_config ?? {}) };
      for (const [key, v] of [["duration_seconds", form.duration], ["rate_pps", form.rate]] as const) {
        if (v.trim()) extra[key] = Number(v);
        else delete extra[key];
      }
      const body: Record<string, unknown> = {
        rule_name: form.rule_name, threshold: form.threshold, action_type: form.action_type,
        is_enabled: form.is_enabled, cooldown_seconds: form.cooldown_seconds,
      };
      if (form.device_id) body.device_id = form.device_id;
      if (form.action_type === "webhook") body.webhook_url = form.webhook_url;
      const r = editing();
      if (r) {
        body.extra_config = extra;
        replace(await api<Rule>(`/prevention/rules/${r.id}`, { method: "PUT", body }));
      } else {
        if (Object.keys(extra).length) body.extra_config = extra;
        setRules([...rules(), await api<Rule>("/prevention/rules", { method: "POST", body })]);
      }
      cancel();
    });
    setBusy(false);
  };
  const measures = () => ["block_ip", "rate_limit", "quarantine"].includes(form.action_type);

  return (
    <section>
      <h1>Prevention</h1>
      <p class="notice" role="note">
        <strong>Dry run unless an agent is set to enforce.</strong> Agents apply block, rate-limit and quarantine rules with nftables only
        when their configuration sets <code>prevent.enforce = true</code>; otherwise a rule that fires is only recorded, as{" "}
        <Badge kind="dry_run">dry run</Badge>, and nothing is blocked. Attack-simulation traffic is always a dry run. Webhook rules are
        called by the hub itself. Each log row below says which: <Badge kind="enforced">enforced</Badge> or <Badge kind="dry_run">dry run</Badge>.
      </p>

      <h2>Rules</h2>
      <ErrorLine error={rulesError()} />
      <ErrorLine error={devicesError()} />
      <ErrorLine error={ruleError()} />
      {/* Focusable so that keyboard users can scroll a wide table that may hold no control. */}
      <div class="table-wrap" tabindex="0" role="region" aria-label="Rules">
        <table>
          <thead>
            <tr><th>Name</th><th>Device</th><th>Threshold</th><th>Action</th><th>Cooldown</th><th>Enabled</th><Show when={can("admin")}><th>Actions</th></Show></tr>
          </thead>
          <tbody>
            <For each={rules()} fallback={<tr><td colspan={7} class="muted">No rules: detections are only logged and alerted.</td></tr>}>
              {(r) => (
                <tr>
                  <td>{r.rule_name}</td>
                  <td>{deviceName(r.device_id)}</td>
                  <td>{r.threshold}</td>
                  <td>{r.action_type.replace(/_/g, " ")}</td>
                  <td>{r.cooldown_seconds} s</td>
                  <td>
                    <Show when={can("admin")} fallback={<Badge kind={r.is_enabled ? "ok" : "idle"}>{r.is_enabled ? "enabled" : "disabled"}</Badge>}>
                      <input type="checkbox" checked={r.is_enabled} aria-label={`Enabled: ${r.rule_name}`} onChange={() => toggle(r)} />
                    </Show>
                  </td>
                  <Show when={can("admin")}>
                    <td>
                      <div class="row">
                        <button class="secondary" aria-label={`Edit ${r.rule_name}`} onClick={() => edit(r)}>Edit</button>
                        <button class="secondary" aria-label={`Delete ${r.rule_name}`} onClick={() => remove(r)}>Delete</button>
                      </div>
                    </td>
                  </Show>
                </tr>
              )}
            </For>
          </tbody>
        </table>
      </div>

      <Show when={can("admin")}>
        <form class="panel" onSubmit={submit} style={{ "margin-top": "1rem" }}>
          <h2>{editing() ? `Edit rule "${editing()!.rule_name}"` : "New rule"}</h2>
          <div class="row">
            <Field label="Name">
              <input required maxLength={100} value={form.rule_name} onInput={(e) => setForm("rule_name", e.currentTarget.value)} />
            </Field>
            <Field label="Device" hint={editing()?.device_id ? "The API cannot make a device's rule global: delete it and create a new one." : undefined}>
              <select value={form.device_id} onChange={(e) => setForm("device_id", e.currentTarget.value)}>
                <option value="" disabled={!!editing()?.device_id}>All devices</option>
                <For each={devices()}>{(d) => <option value={d.id}>{d.name}</option>}</For>
              </select>
            </Field>
            <Field label="Score threshold (0–1)">
              <input type="number" min={0} max={1} step={0.01} value={form.threshold} onInput={(e) => setForm("threshold", e.currentTarget.valueAsNumber)} />
            </Field>
            <Field label="Action">
              <select value={form.action_type} onChange={(e) => setForm("action_type", e.currentTarget.value)}>
                <For each={ACTIONS}>{(a) => <option value={a}>{a.replace(/_/g, " ")}</option>}</For>
              </select>
            </Field>
            <Field label="Cooldown (s)" hint="Per device, between two firings.">
              <input type="number" min={0} max={604800} value={form.cooldown_seconds} onInput={(e) => setForm("cooldown_seconds", e.currentTarget.valueAsNumber)} />
            </Field>
            <Show when={form.action_type === "webhook"}>
              <Field label="Webhook URL">
                <input type="url" required maxLength={500} placeholder="https://…" value={form.webhook_url} onInput={(e) => setForm("webhook_url", e.currentTarget.value)} />
              </Field>
            </Show>
            <Show when={measures()}>
              <Field label="Measure lasts (s)" hint="Empty: 600 s.">
                <input type="number" min={1} max={604800} value={form.duration} onInput={(e) => setForm("duration", e.currentTarget.value)} />
              </Field>
            </Show>
            <Show when={form.action_type === "rate_limit"}>
              <Field label="Rate limit (packets/s)" hint="Empty: 50.">
                <input type="number" min={1} max={1000000} value={form.rate} onInput={(e) => setForm("rate", e.currentTarget.value)} />
              </Field>
            </Show>
            <Field label="Enabled">
              <input type="checkbox" checked={form.is_enabled} onChange={(e) => setForm("is_enabled", e.currentTarget.checked)} />
            </Field>
          </div>
          <div class="row" style={{ "margin-top": "0.75rem" }}>
            <button type="submit" disabled={busy()}>{editing() ? "Save rule" : "Create rule"}</button>
            <Show when={editing()}>
              <button type="button" class="secondary" onClick={cancel}>Cancel editing</button>
            </Show>
          </div>
        </form>
      </Show>

      <h2>Log</h2>
      <p class="muted">Newest first; refreshes every 5 s and whenever a rule fires.</p>
      <ErrorLine error={logPoll.error()} />
      <div class="table-wrap" tabindex="0" role="region" aria-label="Prevention log">
        <table>
          <thead>
            <tr><th>Time</th><th>Device</th><th>Rule</th><th>Action</th><th>Mode</th><th>Outcome</th><th>Details</th></tr>
          </thead>
          <tbody>
            <For each={logs()?.items ?? []} fallback={<tr><td colspan={7} class="muted">Nothing logged yet.</td></tr>}>
              {(l) => (
                <tr>
                  <td>{when(l.timestamp)}</td>
                  <td>{deviceName(l.device_id)}</td>
                  <td>{ruleName(l.rule_id)}</td>
                  <td>{l.action_executed.replace(/^dry_run:/, "").replace(/_/g, " ")}</td>
                  <td style={{ "font-weight": 700 }}>
                    <Badge kind={mode(l) === "alert_only" ? "idle" : mode(l)}>
                      {mode(l) === "dry_run" ? "dry run" : mode(l) === "enforced" ? "enforced" : "alert only"}
                    </Badge>
                  </td>
                  <td><Badge kind={l.success ? "ok" : "failed"}>{l.success ? "succeeded" : "failed"}</Badge></td>
                  <td style={{ "white-space": "normal", "min-width": "20rem" }}>{summary(l.details)}</td>
                </tr>
              )}
            </For>
          </tbody>
        </table>
      </div>
      <Pager page={page()} total={logs()?.total ?? 0} size={LOG_PAGE} noun="entries" onPage={goPage} />
    </section>
  );
}
