// Small pieces every page uses: errors in words, times, badges, a chart, polling.
import { createEffect, createSignal, For, JSX, onCleanup, onMount, Show } from "solid-js";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { ApiError } from "./api";

export function messageOf(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

/** An error shown in words, in a live region so screen readers announce it. */
export function ErrorLine(props: { error: unknown }) {
  return (
    <Show when={props.error}>
      <p class="error" role="alert">
        {messageOf(props.error)}
      </p>
    </Show>
  );
}

export function when(ts?: string | null): string {
  if (!ts) return "never";
  const d = new Date(ts);
  return d.toLocaleString(undefined, { hour12: false });
}

export function ago(ts?: string | null): string {
  if (!ts) return "never";
  const s = Math.round((Date.now() - new Date(ts).getTime()) / 1000);
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function pct(x?: number | null, digits = 1): string {
  return x === undefined || x === null ? "—" : `${(x * 100).toFixed(digits)} %`;
}

export function num(x?: number | null, digits = 3): string {
  return x === undefined || x === null ? "—" : x.toFixed(digits);
}

export function Badge(props: { kind: string; children?: JSX.Element }) {
  return <span class={`badge b-${props.kind.replace(/[^a-z_]/gi, "")}`}>{props.children ?? props.kind.replace(/_/g, " ")}</span>;
}

/** Runs `load` now and every `ms` while the page is open; returns the error signal. */
export function poll(load: () => Promise<unknown>, ms: number) {
  const [error, setError] = createSignal<unknown>(null);
  const run = () =>
    load()
      .then(() => setError(null))
      .catch((e) => setError(e));
  onMount(run);
  const t = setInterval(run, ms);
  onCleanup(() => clearInterval(t));
  return { error, reload: run };
}

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

export interface Series {
  label: string;
  color: string;
  /** Draw as points only (e.g. attack markers). */
  points?: boolean;
  scale?: string;
}

/**
 * A uPlot chart: `data()` is [x (unix seconds), ...one array per series]. Redraws when the data
 * signal changes and follows the container's width.
 */
export function Chart(props: { title: string; series: Series[]; data: () => uPlot.AlignedData; height?: number; yRange?: [number, number] }) {
  let box!: HTMLDivElement;
  let plot: uPlot | undefined;
  onMount(() => {
    const opts: uPlot.Options = {
      width: Math.max(box.clientWidth, 280),
      height: props.height ?? 220,
      legend: { show: true },
      axes: [
        { stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid") } },
        { stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid") } },
      ],
      scales: props.yRange ? { y: { range: props.yRange } } : {},
      series: [
        {},
        ...props.series.map((s) => ({
          label: s.label,
          stroke: cssVar(s.color),
          width: s.points ? 0 : 2,
          points: s.points ? { show: true, size: 6, fill: cssVar(s.color) } : { show: false },
          scale: s.scale,
        })),
      ],
    };
    plot = new uPlot(opts, props.data(), box);
    const ro = new ResizeObserver(() => plot?.setSize({ width: Math.max(box.clientWidth, 280), height: props.height ?? 220 }));
    ro.observe(box);
    onCleanup(() => {
      ro.disconnect();
      plot?.destroy();
    });
  });
  createEffect(() => {
    const d = props.data();
    plot?.setData(d);
  });
  return <div class="chart" ref={box} role="img" aria-label={props.title} />;
}

/** A labelled form field; the hint stays outside the label so that the field's name is the label. */
export function Field(props: { label: string; children: JSX.Element; hint?: string }) {
  return (
    <div class="field">
      <label>
        <span>{props.label}</span>
        {props.children}
      </label>
      <Show when={props.hint}>
        <small>{props.hint}</small>
      </Show>
    </div>
  );
}

/** Families the model knows, with readable names. */
export const FAMILY_NAMES: Record<string, string> = {
  benign: "benign",
  dos_ddos: "DoS / DDoS",
  slow_rate: "slow-rate DoS",
  scan: "scan",
  brute_force: "brute force",
  botnet_c2: "botnet C2",
  exfiltration: "exfiltration",
  web_attack: "web attack",
  iot_flood: "IoT flood",
};
export function family(f?: string | null): string {
  if (!f) return "—";
  return FAMILY_NAMES[f] ?? f.replace(/_/g, " ");
}

/** A table from [header, cell] column pairs. */
export type Col<T> = [string, (row: T) => JSX.Element];
// The wrapper scrolls sideways on narrow screens, so it takes focus (keyboard scrolling) and a name.
export function Table<T>(props: { label: string; cols: Col<T>[]; rows: T[]; caption?: string }) {
  return (
    <div class="table-wrap" tabindex="0" role="region" aria-label={props.label}>
      <table>
        <Show when={props.caption}><caption class="muted">{props.caption}</caption></Show>
        <thead><tr><For each={props.cols}>{(c) => <th scope="col">{c[0]}</th>}</For></tr></thead>
        <tbody>
          <For each={props.rows}>{(r) => <tr><For each={props.cols}>{(c) => <td>{c[1](r)}</td>}</For></tr>}</For>
        </tbody>
      </table>
    </div>
  );
}

/** Previous/next page buttons for a paged list of `total` items, `size` a page. */
export function Pager(props: { page: number; total: number; size: number; noun: string; onPage: (page: number) => void }) {
  const pages = () => Math.max(1, Math.ceil(props.total / props.size));
  return (
    <div class="pager">
      <button class="secondary" disabled={props.page <= 1} onClick={() => props.onPage(props.page - 1)}>
        Previous page
      </button>
      <span>
        Page {props.page} of {pages()} ({props.total} {props.noun})
      </span>
      <button class="secondary" disabled={props.page >= pages()} onClick={() => props.onPage(props.page + 1)}>
        Next page
      </button>
    </div>
  );
}
