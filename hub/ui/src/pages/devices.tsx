// Every device in the fleet: search, filters and sorting run in the API so they hold at
// thousands of devices.
import { createSignal, For, Show } from "solid-js";
import { api, Page, qs } from "../api";
import { ago, Badge, ErrorLine, Field, Pager, poll } from "../ui";

export interface Device {
  id: string;
  agent_id: string | null;
  name: string;
  device_type: string;
  ip_address: string;
  protocol: string;
  port: number | null;
  status: string;
  traffic_source: string;
  description: string | null;
  last_seen_at: string | null;
  threat_count_today: number;
}
interface AgentOut {
  id: string;
  name: string;
}

const COLUMNS: { key: string; label: string }[] = [
  { key: "name", label: "Name" },
  { key: "status", label: "Status" },
  { key: "", label: "Address" },
  { key: "", label: "Type" },
  { key: "", label: "Agent" },
  { key: "last_seen", label: "Last seen" },
  { key: "threats", label: "Threats today" },
];

export default function Devices() {
  const [search, setSearch] = createSignal("");
  const [status, setStatus] = createSignal("");
  const [agent, setAgent] = createSignal("");
  const [sort, setSort] = createSignal("name");
  const [desc, setDesc] = createSignal(false);
  const [page, setPage] = createSignal(1);
  const [devices, setDevices] = createSignal<Page<Device> | null>(null);
  const [agents, setAgents] = createSignal<AgentOut[]>([]);
  const size = 50;

  const load = async () => {
    const q = qs({ search: search().trim(), status: status(), agent_id: agent(), sort: sort(), desc: desc(), page: page(), size });
    setDevices(await api<Page<Device>>("/devices" + q));
  };
  const p = poll(load, 15_000);
  const ag = poll(async () => setAgents(await api<AgentOut[]>("/agents")), 60_000);
  const agentName = (id: string | null) => (id ? agents().find((a) => a.id === id)?.name ?? id.slice(0, 8) : "—");
  const refilter = () => {
    setPage(1);
    p.reload();
  };
  const sortBy = (key: string) => {
    if (sort() === key) setDesc(!desc());
    else {
      setSort(key);
      setDesc(key === "threats" || key === "last_seen");
    }
    refilter();
  };

  return (
    <section>
      <h1>Devices</h1>
      <form class="row" role="search" onSubmit={(e) => { e.preventDefault(); refilter(); }}>
        <Field label="Search name or description">
          <input type="search" value={search()} onInput={(e) => setSearch(e.currentTarget.value)} onChange={refilter} />
        </Field>
        <Field label="Status">
          <select value={status()} onChange={(e) => { setStatus(e.currentTarget.value); refilter(); }}>
            <option value="">any</option>
            <option value="online">online</option>
            <option value="offline">offline</option>
            <option value="under_attack">under attack</option>
            <option value="quarantined">quarantined</option>
          </select>
        </Field>
        <Field label="Agent">
          <select value={agent()} onChange={(e) => { setAgent(e.currentTarget.value); refilter(); }}>
            <option value="">any</option>
            <For each={agents()}>{(a) => <option value={a.id}>{a.name}</option>}</For>
          </select>
        </Field>
        <button type="submit">Search</button>
      </form>
      <ErrorLine error={p.error() ?? ag.error()} />
      <p class="muted" role="status">
        {devices() ? `${devices()!.total} devices` : "Loading…"}
      </p>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <For each={COLUMNS}>
                {(c) => (
                  <th scope="col" aria-sort={c.key && sort() === c.key ? (desc() ? "descending" : "ascending") : undefined}>
                    <Show when={c.key} fallback={c.label}>
                      <button class="sort" onClick={() => sortBy(c.key)}>
                        {c.label} {sort() === c.key ? (desc() ? "▼" : "▲") : ""}
                      </button>
                    </Show>
                  </th>
                )}
              </For>
            </tr>
          </thead>
          <tbody>
            <For each={devices()?.items ?? []}>
              {(d) => (
                <tr classList={{ attack: d.status === "under_attack" }}>
                  <td>
                    <a href={`#/devices/${d.id}`}>{d.name}</a>
                  </td>
                  <td>
                    <Badge kind={d.status} />
                  </td>
                  <td>
                    <code>{d.ip_address}</code>
                  </td>
                  <td>{d.device_type.replace(/_/g, " ")}</td>
                  <td>{agentName(d.agent_id)}</td>
                  <td>{ago(d.last_seen_at)}</td>
                  <td>{d.threat_count_today}</td>
                </tr>
              )}
            </For>
          </tbody>
        </table>
      </div>
      <Pager page={page()} total={devices()?.total ?? 0} size={size} noun="devices" onPage={(n) => { setPage(n); p.reload(); }} />
      <Show when={devices()?.total === 0}>
        <p class="muted">
          No device matches. Devices appear when an enrolled agent sees them (<a href="#/settings">Settings & fleet</a>).
        </p>
      </Show>
    </section>
  );
}

