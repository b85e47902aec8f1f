/**
 * Plotly figures as plain typed data: the builders every lesson's charts use (line, bar,
 * scatter, roofline, timeline). A figure is JSON; `display(fig)` (display.ts) shows it in a
 * notebook and the lesson site draws the same JSON.
 *
 * Lesson: first met in lesson 1 ("Why inference is slow"), used by every lesson.
 */
import { attainableGflops, ridgeIntensity, type Roofs } from '../bench/roofline';

/** One plotly trace (a subset of plotly's schema, open for any other attribute). */
export interface Trace {
  type: 'scatter' | 'bar';
  x: readonly (number | string)[];
  y: readonly (number | string)[];
  name?: string;
  mode?: 'lines' | 'markers' | 'lines+markers' | 'text' | 'markers+text' | 'lines+markers+text';
  text?: readonly string[] | string;
  orientation?: 'v' | 'h';
  [attribute: string]: unknown;
}

/** A plotly figure: traces, layout, config. */
export interface Figure {
  data: Trace[];
  layout: Record<string, unknown>;
  config?: Record<string, unknown>;
}

export interface AxisOptions {
  title?: string;
  log?: boolean;
  range?: [number, number];
}

export interface ChartOptions {
  title?: string;
  x?: AxisOptions;
  y?: AxisOptions;
  /** pixels (default 420) */
  height?: number;
  /** where the numbers came from: shown as a label under the chart (see FigureSource) */
  source?: SourceSpec;
}

// ---- where a figure's numbers come from
//
// Every chart (and table) in a lesson says where its numbers came from, with one of three kinds:
//   'here'     measured on the reader's machine, in this run;
//   'h200'     measured on an NVIDIA H200 (a committed record in data/bench/webgpu/);
//   'modeled'  computed by a cost model (e.g. the roofline model of a real deployment).
// How a notebook marks it: pass `source` to any chart builder (or to showTable), e.g.
//   lineChart(series, { title: '...', source: 'here' })
//   barChart(cats, series, { source: ['here', { kind: 'h200', detail: 'data/bench/webgpu/spec.json' }] })
//   withSource(fig, { kind: 'modeled', detail: 'H200 BF16 roofline, Llama-3-8B shapes' })  // a hand-built Figure
//   showTable(rows, { caption: '...', source: 'h200' })
// The kinds are stored in the figure's JSON (`layout.meta.source`, an array of FigureSource), so
// the label travels with the chart everywhere: the chart's HTML bundle shows it under the plot
// (`<div class="il-source" data-source="here h200">`), its text/plain summary ends with it, and
// the lesson site (scripts/lessons/render.ts) draws it under the chart. figureSource(fig) reads it.

export type FigureSourceKind = 'here' | 'h200' | 'modeled';

/** Where a figure's numbers came from; `detail` (a file, a model's assumptions) follows the label. */
export interface FigureSource {
  kind: FigureSourceKind;
  detail?: string;
}

/** One source or several (a chart that puts this machine beside the H200, for example). */
export type SourceSpec = FigureSourceKind | FigureSource | readonly (FigureSourceKind | FigureSource)[];

const SOURCE_KINDS: Record<FigureSourceKind, string> = {
  here: 'measured on this machine',
  h200: 'measured on an NVIDIA H200 (committed record)',
  modeled: 'modeled (cost model, not a measurement)',
};

/** The sources as a list of FigureSource (throws on an unknown kind). */
export function normalizeSources(spec: SourceSpec): FigureSource[] {
  const list = (Array.isArray(spec) ? spec : [spec]) as readonly (FigureSourceKind | FigureSource)[];
  return list.map((s) => {
    const src = typeof s === 'string' ? { kind: s } : { ...s };
    if (!(src.kind in SOURCE_KINDS))
      throw new Error(`unknown figure source '${String(src.kind)}': use ${Object.keys(SOURCE_KINDS).join(', ')}`);
    return src;
  });
}

/** The label a reader sees: "Source: measured on this machine; modeled (...): detail". */
export function sourceLabel(spec: SourceSpec): string {
  return `Source: ${normalizeSources(spec)
    .map((s) => SOURCE_KINDS[s.kind] + (s.detail ? `: ${s.detail}` : ''))
    .join('; ')}`;
}

/** Mark where `fig`'s numbers came from (for figures not made by a builder); returns `fig`. */
export function withSource<F extends Figure>(fig: F, spec: SourceSpec): F {
  const meta = fig.layout.meta;
  fig.layout.meta = { ...(meta && typeof meta === 'object' && !Array.isArray(meta) ? meta : {}), source: normalizeSources(spec) };
  return fig;
}

/** The sources a figure was marked with, or [] when it was not. */
export function figureSource(fig: Pick<Figure, 'layout'>): FigureSource[] {
  const src = (fig.layout?.meta as { source?: unknown } | undefined)?.source;
  if (!Array.isArray(src)) return [];
  return src.filter(
    (s): s is FigureSource =>
      !!s && typeof s === 'object' && typeof (s as FigureSource).kind === 'string' && (s as FigureSource).kind in SOURCE_KINDS,
  );
}

export interface Series {
  name: string;
  x: readonly number[];
  y: readonly number[];
  /** 'solid' (default), 'dash', 'dot' */
  dash?: 'solid' | 'dash' | 'dot';
  markers?: boolean;
  /** a label per point, shown on hover */
  text?: readonly string[];
}

/**
 * Shared layout: title, axes, legend, size. The title sits top left, below the strip where
 * plotly's toolbar (modebar) appears on hover, so the two never overlap; hover labels show trace
 * names in full (plotly cuts them at 15 characters by default); the legend goes under the x axis.
 */
export function baseLayout(o: ChartOptions): Record<string, unknown> {
  const axis = (a: AxisOptions | undefined) => ({
    title: { text: a?.title ?? '' },
    type: a?.log ? 'log' : 'linear',
    ...(a?.range ? { range: a.log ? a.range.map(Math.log10) : a.range } : {}),
    zeroline: false,
  });
  return {
    // the modebar takes the top ~30 px at the right: the title starts below it
    title: { text: o.title ?? '', x: 0, xref: 'container', xanchor: 'left', y: 1, yref: 'container', yanchor: 'top', pad: { t: 36, l: 12 } },
    xaxis: axis(o.x),
    yaxis: axis(o.y),
    height: o.height ?? 420,
    margin: { l: 70, r: 30, t: o.title ? 90 : 40, b: 60 },
    legend: { orientation: 'h', x: 0, xanchor: 'left', y: -0.2, yanchor: 'top' },
    hoverlabel: { namelength: -1 },
    template: undefined,
    ...(o.source !== undefined ? { meta: { source: normalizeSources(o.source) } } : {}),
  };
}

/** Lines over x, one per series. */
export function lineChart(series: readonly Series[], o: ChartOptions = {}): Figure {
  return legendBelow({
    data: series.map((s) => ({
      type: 'scatter',
      mode: s.markers === false ? 'lines' : 'lines+markers',
      name: s.name,
      x: [...s.x],
      y: [...s.y],
      line: { dash: s.dash ?? 'solid' },
      ...(s.text ? { text: [...s.text], hovertemplate: '%{text}<br>x=%{x}<br>y=%{y}<extra></extra>' } : {}),
    })),
    layout: baseLayout(o),
  });
}

export interface BarSeries {
  name: string;
  values: readonly number[];
  /** text drawn on each bar */
  labels?: readonly string[];
}

/** Bars per category, one colour per series (grouped, or stacked with `stacked`). */
export function barChart(
  categories: readonly string[],
  series: readonly BarSeries[],
  o: ChartOptions & { stacked?: boolean } = {},
): Figure {
  return legendBelow({
    data: series.map((s) => ({
      type: 'bar',
      name: s.name,
      x: [...categories],
      y: [...s.values],
      ...(s.labels ? { text: [...s.labels], textposition: 'auto' } : {}),
    })),
    // categories on a category axis (a linear axis draws no bars for string x values)
    layout: {
      ...baseLayout(o),
      xaxis: { ...(baseLayout(o).xaxis as Record<string, unknown>), type: 'category' },
      barmode: o.stacked ? 'stack' : 'group',
    },
  });
}

export interface Point {
  name: string;
  x: number;
  y: number;
  /** group: points with the same group share a colour and a legend entry */
  group?: string;
}

/** Items by key, keys in first-seen order (one trace per key). */
function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item]);
  return groups;
}

/**
 * Labelled points, one trace per group. `labels: 'hover'` names the points on hover only (for
 * clusters whose printed names would overlap); the legend still tells the groups apart.
 */
export function scatterChart(points: readonly Point[], o: ChartOptions & { labels?: 'points' | 'hover' } = {}): Figure {
  const groups = groupBy(points, (p) => p.group ?? '');
  const hover = o.labels === 'hover';
  return legendBelow({
    data: [...groups].map(([group, ps]) => ({
      type: 'scatter',
      mode: hover ? 'markers' : 'markers+text',
      name: group,
      x: ps.map((p) => p.x),
      y: ps.map((p) => p.y),
      text: ps.map((p) => p.name),
      ...(hover ? { hoverinfo: 'text+x+y' } : { textposition: 'top center' }),
      marker: { size: 10 },
    })),
    layout: { ...baseLayout(o), showlegend: groups.size > 1 },
  });
}

/** One kernel or model step on a roofline chart: arithmetic intensity and achieved GFLOP/s. */
export interface RooflinePoint {
  name: string;
  /** FLOPs per byte read */
  intensity: number;
  /** achieved (measured) or predicted GFLOP/s */
  gflops: number;
  group?: string;
}

/**
 * The roofline: attainable GFLOP/s = min(peak, intensity x bandwidth) on log-log axes, the ridge
 * point marked, and the given points placed on it.
 */
export function rooflineChart(roofs: Roofs, points: readonly RooflinePoint[], o: ChartOptions = {}): Figure {
  const ridge = ridgeIntensity(roofs);
  const xs = points.map((p) => p.intensity).filter((v) => v > 0);
  const lo = Math.min(ridge / 100, ...xs) / 2;
  const hi = Math.max(ridge * 100, ...xs) * 2;
  const n = 60;
  const grid = Array.from({ length: n + 1 }, (_, i) => lo * (hi / lo) ** (i / n));
  grid.push(ridge);
  grid.sort((a, b) => a - b);
  const roof: Trace = {
    type: 'scatter',
    mode: 'lines',
    name: `roof: ${fmt(roofs.bandwidthGBps)} GB/s, ${fmt(roofs.peakGflops)} GFLOP/s`,
    x: grid,
    y: grid.map((i) => attainableGflops(i, roofs)),
    line: { color: 'black', width: 2 },
    hovertemplate: 'intensity %{x:.3g} FLOP/B<br>attainable %{y:.3g} GFLOP/s<extra></extra>',
  };
  const groups = new Map<string, RooflinePoint[]>();
  for (const p of points) groups.set(p.group ?? 'measured', [...(groups.get(p.group ?? 'measured') ?? []), p]);
  // labels only for small groups (a sweep's many points would overlap) and only where they do not
  // land on another label; hover always shows the name
  const ys = [...points.map((p) => p.gflops), attainableGflops(lo, roofs), roofs.peakGflops].filter((v) => v > 0);
  const labelled = new Set(
    placeLabels(
      [...groups.values()].flatMap((ps) => (ps.length <= 3 ? ps : [])).map((p) => ({ key: p, label: p.name, x: p.intensity, y: p.gflops })),
      { x: [lo, hi], y: [Math.min(...ys), Math.max(...ys)] },
      [
        { label: 'memory-bound', x: lo * 3, y: attainableGflops(lo * 3, roofs), anchor: 'left' },
        { label: 'compute-bound', x: hi / 3, y: roofs.peakGflops, anchor: 'right' },
      ],
    ),
  );
  const traces: Trace[] = [...groups].map(([group, ps]) => ({
    type: 'scatter',
    mode: ps.some((p) => labelled.has(p)) ? 'markers+text' : 'markers',
    name: group,
    x: ps.map((p) => p.intensity),
    y: ps.map((p) => p.gflops),
    text: ps.map((p) => (labelled.has(p) ? p.name : '')),
    customdata: ps.map((p) => p.name),
    textposition: 'top center',
    marker: { size: 11 },
    hovertemplate: '%{customdata}<br>%{x:.3g} FLOP/B, %{y:.3g} GFLOP/s<extra></extra>',
  }));
  const layout = baseLayout({
    ...o,
    x: { title: 'arithmetic intensity (FLOPs per byte read)', log: true, ...o.x },
    y: { title: 'GFLOP/s', log: true, ...o.y },
  });
  layout.shapes = [{ type: 'line', x0: ridge, x1: ridge, yref: 'paper', y0: 0, y1: 1, line: { dash: 'dot', color: 'grey' } }];
  layout.annotations = [
    { x: Math.log10(ridge), y: 1, yref: 'paper', text: `ridge ${fmt(ridge)} FLOP/B`, showarrow: false, yanchor: 'bottom' },
    {
      x: Math.log10(lo * 3),
      y: Math.log10(attainableGflops(lo * 3, roofs)),
      text: 'memory-bound',
      showarrow: false,
      yanchor: 'bottom',
      xanchor: 'left',
    },
    {
      x: Math.log10(hi / 3),
      y: Math.log10(roofs.peakGflops),
      text: 'compute-bound',
      showarrow: false,
      yanchor: 'bottom',
      xanchor: 'right',
    },
  ];
  return legendBelow({ data: [roof, ...traces], layout });
}

/**
 * Which point labels (drawn centred above their point, on log-log axes spanning `range`) can be
 * shown without overlapping an earlier one: greedy, in order. Sizes are estimates for a chart
 * ~800x250 px inside its margins and plotly's 12 px font.
 */
export function placeLabels<K>(
  items: readonly { key: K; label: string; x: number; y: number }[],
  range: { x: [number, number]; y: [number, number] },
  /** text already on the chart (annotations), anchored at its left or right end, just above (x, y) */
  reserved: readonly { label: string; x: number; y: number; anchor: 'left' | 'right' }[] = [],
): K[] {
  const decades = (r: [number, number]) => Math.max(Math.log10(r[1] / r[0]), 0.5);
  const pxX = 800 / decades(range.x);
  const pxY = 250 / decades(range.y);
  const placed = reserved.map((r) => {
    const w = 6.5 * r.label.length + 6;
    return { cx: Math.log10(r.x) * pxX + (r.anchor === 'left' ? w / 2 : -w / 2), cy: Math.log10(r.y) * pxY + 8, w };
  });
  const kept: K[] = [];
  for (const it of items) {
    if (!(it.x > 0 && it.y > 0)) continue;
    const box = { cx: Math.log10(it.x) * pxX, cy: Math.log10(it.y) * pxY + 14, w: 6.5 * it.label.length + 6 };
    if (placed.some((p) => Math.abs(p.cx - box.cx) < (p.w + box.w) / 2 && Math.abs(p.cy - box.cy) < 16)) continue;
    placed.push(box);
    kept.push(it.key);
  }
  return kept;
}

/** One interval of a timeline. */
export interface Span {
  /** the row it is drawn on (a sequence, a worker, a phase) */
  lane: string;
  start: number;
  end: number;
  /** colour group, e.g. 'prefill' / 'decode' */
  kind?: string;
  label?: string;
}

/** Horizontal bars from start to end on one row per lane (a Gantt-style timeline). */
export function timelineChart(spans: readonly Span[], o: ChartOptions = {}): Figure {
  return legendBelow({
    data: [...groupBy(spans, (s) => s.kind ?? '')].map(([kind, ss]) => ({
      type: 'bar',
      orientation: 'h',
      name: kind,
      y: ss.map((s) => s.lane),
      x: ss.map((s) => s.end - s.start),
      base: ss.map((s) => s.start),
      text: ss.map((s) => s.label ?? ''),
      customdata: ss.map((s) => s.end),
      hovertemplate: '%{y}: %{base:.4g} to %{customdata:.4g}<extra>%{text}</extra>',
    })),
    layout: {
      ...baseLayout({ ...o, x: { title: 'time', ...o.x } }),
      barmode: 'overlay',
      yaxis: { autorange: 'reversed', type: 'category' },
    },
  });
}

// ---- legend room

const LEGEND_ROW_PX = 22;
const X_TITLE_PX = 72; // tick labels and the x-axis title, under the plot
const ASSUMED_PLOT_WIDTH_PX = 760; // a notebook output or a site page, less the side margins

/**
 * Room for the legend under the x-axis title: plotly places a horizontal legend by a fraction of
 * the plot's height, so without this it lands on the axis title. The number of legend rows is
 * estimated from the trace names (~6.5 px per character at plotly's 12 px font); if the chart is
 * narrower than assumed and the legend wraps more, plotly grows the bottom margin itself.
 */
export function legendBelow(fig: Figure): Figure {
  const layout = fig.layout;
  const shown = fig.data.filter((t) => t.showlegend !== false && t.name);
  if (layout.showlegend === false || shown.length < 2) return fig;
  let rows = 1;
  let used = 0;
  for (const t of shown) {
    const w = 40 + 6.5 * String(t.name).length;
    if (used > 0 && used + w > ASSUMED_PLOT_WIDTH_PX) {
      rows++;
      used = 0;
    }
    used += w;
  }
  const margin = { ...(layout.margin as Record<string, number>) };
  margin.b = X_TITLE_PX + rows * LEGEND_ROW_PX + 10;
  const height = typeof layout.height === 'number' ? layout.height : 420;
  const plotHeight = Math.max(80, height - (margin.t ?? 40) - margin.b);
  layout.margin = margin;
  layout.legend = { ...(layout.legend as Record<string, unknown>), y: -X_TITLE_PX / plotHeight, yanchor: 'top' };
  return fig;
}

/** A short summary of a figure for text/plain: title and each trace's name and size. */
export function describeFigure(fig: Figure): string {
  const title = ((fig.layout.title as { text?: string } | undefined)?.text ?? '') || 'figure';
  const lines = fig.data.map((t) => `  ${t.name ?? t.type}: ${t.x.length} points`);
  const src = figureSource(fig);
  return [`[plot] ${title}`, ...lines, ...(src.length ? [sourceLabel(src)] : [])].join('\n');
}

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toPrecision(2);
}
