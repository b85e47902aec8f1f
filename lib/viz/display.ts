/**
 * Showing things in a tslab notebook: charts as one multi-MIME display bundle, markdown and
 * tables whose numbers come from the run, generated text (escaped), and a progress line that
 * updates in place.
 *
 * tslab's public `display.raw(mime, data)` sends one MIME type per call. Underneath, each
 * execution installs a writer, `lastWriteDisplayData({ data, metadata, transient }, update)`
 * in tslab's `dist/jupyter.js`, that sends a whole Jupyter display_data (or update_display_data)
 * message. We find that module in `require.cache` (the kernel loaded it; this library runs in the
 * same process) and send bundles through it. Outside a kernel (node, tests) bundles go to a sink
 * you can set, or their text/plain goes to stdout.
 *
 * Lesson: used by every lesson (first in lesson 1).
 */
import * as fs from 'node:fs';

import { describeFigure, type Figure } from './figures';
import { escapeHtml, jsonForScript } from './html';

/** A Jupyter MIME bundle: MIME type -> content (JSON for +json types, strings otherwise). */
export type MimeBundle = Record<string, unknown>;

/** Where bundles go outside a kernel (tests); `update` is true for in-place updates. */
export type DisplaySink = (bundle: MimeBundle, displayId: string | undefined, update: boolean) => void;

interface KernelMessage {
  data: MimeBundle;
  metadata: Record<string, unknown>;
  transient: { display_id?: string };
}
type KernelWriter = (content: KernelMessage, update: boolean) => void;

let sink: DisplaySink | null = null;

/** Send bundles to `s` instead of the kernel/stdout (null restores the default). */
export function setDisplaySink(s: DisplaySink | null): void {
  sink = s;
}

/** The running tslab kernel's writer for the current cell, or null outside a kernel. */
function kernelWriter(): KernelWriter | null {
  for (const [key, mod] of Object.entries(require.cache)) {
    if (!/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(key)) continue;
    const w = (mod?.exports as { lastWriteDisplayData?: unknown } | undefined)?.lastWriteDisplayData;
    if (typeof w === 'function') return w as KernelWriter;
  }
  return null;
}

/** True when running inside a tslab kernel. */
export function inNotebook(): boolean {
  return kernelWriter() !== null;
}

/** Send one bundle (every MIME type in one message). With a displayId, later calls can update it. */
export function displayBundle(bundle: MimeBundle, opts: { displayId?: string; update?: boolean } = {}): void {
  const update = opts.update ?? false;
  if (sink) return sink(bundle, opts.displayId, update);
  const writer = kernelWriter();
  if (writer) {
    writer({ data: bundle, metadata: {}, transient: opts.displayId ? { display_id: opts.displayId } : {} }, update);
    return;
  }
  const text = bundle['text/plain'];
  if (typeof text === 'string' && !update) console.log(text);
}

// ---- charts

let plotlyInlined = false;
let plotCounter = 0;

/** The plotly.js bundle shipped in node_modules (offline). */
export function plotlyJsPath(): string {
  return require.resolve('plotly.js-dist-min');
}

/** plotly.js source, to inline once per notebook or copy once per site. */
export function plotlyJsSource(): string {
  return fs.readFileSync(plotlyJsPath(), 'utf8');
}

/**
 * HTML that draws `fig` with a global `Plotly`: a div and an inline script. With `inlineLibrary`
 * the plotly.js source comes first (once per page); otherwise the page must load it.
 */
export function figureHtml(fig: Figure, opts: { id?: string; inlineLibrary?: boolean } = {}): string {
  const id = opts.id ?? `il-plot-${process.pid}-${Date.now().toString(36)}-${plotCounter++}`;
  const height = typeof fig.layout.height === 'number' ? fig.layout.height : 420;
  const lib = opts.inlineLibrary ? `<script data-il-plotly-lib="1">${plotlyJsSource()}</script>\n` : '';
  const config = { responsive: true, displaylogo: false, ...fig.config };
  return (
    `${lib}<div id="${escapeHtml(id)}" class="il-plot" style="width:100%;height:${height}px"></div>\n` +
    `<script>(function(){var f=${jsonForScript({ data: fig.data, layout: fig.layout, config })};` +
    `var el=document.getElementById(${jsonForScript(id)});` +
    `if(window.Plotly){window.Plotly.newPlot(el,f.data,f.layout,f.config);}` +
    `else{el.textContent='plotly.js is not loaded on this page: run the first chart cell of the notebook again.';}})();</script>`
  );
}

/** The bundle for a figure: plotly JSON, HTML (plotly.js inlined the first time), text summary. */
export function figureBundle(fig: Figure): MimeBundle {
  const inlineLibrary = !plotlyInlined;
  plotlyInlined = true;
  return {
    'application/vnd.plotly.v1+json': { data: fig.data, layout: fig.layout, config: fig.config ?? {} },
    'text/html': figureHtml(fig, { inlineLibrary }),
    'text/plain': describeFigure(fig),
  };
}

/** Show a plotly figure: one bundle with application/vnd.plotly.v1+json, text/html and text/plain. */
export function display(fig: Figure): void {
  displayBundle(figureBundle(fig));
}

// ---- prose, tables, generated text

/**
 * Show markdown written by code, so the numbers in a sentence come from the run. Interpolate
 * generated text only through escapeHtml (the site also escapes raw HTML in markdown outputs).
 */
export function showMarkdown(markdown: string): void {
  displayBundle({ 'text/markdown': markdown, 'text/plain': markdown });
}

export type Cell = string | number;

/** A table of rows (each a record column -> value); numbers formatted with `digits` significant digits. */
export function showTable(rows: readonly Record<string, Cell>[], opts: { caption?: string; digits?: number } = {}): void {
  displayBundle(tableBundle(rows, opts));
}

/** The bundle showTable sends: an HTML table (every cell escaped) and aligned text. */
export function tableBundle(rows: readonly Record<string, Cell>[], opts: { caption?: string; digits?: number } = {}): MimeBundle {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: Cell | undefined) => (v === undefined ? '' : typeof v === 'number' ? formatNumber(v, opts.digits ?? 3) : v);
  const body = rows.map((r) => cols.map((c) => cell(r[c])));
  const html =
    `<table class="il-table">${opts.caption ? `<caption>${escapeHtml(opts.caption)}</caption>` : ''}` +
    `<thead><tr>${cols.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr></thead>` +
    `<tbody>${body.map((r) => `<tr>${r.map((v) => `<td>${escapeHtml(v)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
  const widths = cols.map((c, i) => Math.max(c.length, ...body.map((r) => r[i].length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i])).join('  ');
  const text = [opts.caption ?? '', line(cols), ...body.map(line)].filter((l) => l !== '').join('\n');
  return { 'text/html': html, 'text/plain': text };
}

/** Show model output as text: escaped HTML (a `<script>` in it stays text) and plain text. */
export function showGenerated(text: string, opts: { label?: string } = {}): void {
  displayBundle(generatedBundle(text, opts));
}

/** The bundle showGenerated sends. */
export function generatedBundle(text: string, opts: { label?: string } = {}): MimeBundle {
  const label = opts.label ? `<div class="il-label">${escapeHtml(opts.label)}</div>` : '';
  return {
    'text/html': `${label}<pre class="il-generated">${escapeHtml(text)}</pre>`,
    'text/plain': opts.label ? `${opts.label}\n${text}` : text,
  };
}

/** A number with `digits` significant digits, without exponent for everyday magnitudes. */
export function formatNumber(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return v.toLocaleString('en-US');
  const a = Math.abs(v);
  if (a >= 10 ** digits) return Math.round(v).toLocaleString('en-US');
  if (a !== 0 && a < 1e-3) return v.toExponential(digits - 1);
  return String(Number(v.toPrecision(digits)));
}

// ---- in-place display and progress

let displayCounter = 0;

/** One output that later calls replace (tslab's newDisplay, for whole bundles). */
export interface LiveDisplay {
  show(bundle: MimeBundle): void;
  markdown(s: string): void;
  html(s: string): void;
  text(s: string): void;
  figure(fig: Figure): void;
}

/** A display entry updated in place: the first call creates it, later calls replace it. */
export function newDisplay(): LiveDisplay {
  const id = `il-${process.pid}-${Date.now().toString(36)}-${displayCounter++}`;
  let shown = false;
  const show = (bundle: MimeBundle) => {
    displayBundle(bundle, { displayId: id, update: shown });
    shown = true;
  };
  return {
    show,
    markdown: (s) => show({ 'text/markdown': s, 'text/plain': s }),
    html: (s) => show({ 'text/html': s, 'text/plain': s.replace(/<[^>]*>/g, '') }),
    text: (s) => show({ 'text/plain': s }),
    figure: (fig) => show(figureBundle(fig)),
  };
}

export interface Progress {
  /** advance by n (default 1) with an optional short note */
  tick(n?: number, note?: string): void;
  /** mark finished (the output then shows the total time) */
  done(note?: string): void;
}

/**
 * A progress bar for long cells, updated in place (at most 4 times a second). In nbconvert
 * output the last state remains: "label: 12/12 in 3.4 s".
 */
export function progress(total: number, label = 'progress'): Progress {
  const live = newDisplay();
  const t0 = performance.now();
  let count = 0;
  let last = 0;
  const render = (note: string, finished: boolean) => {
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    const text = `${label}: ${count}/${total}${finished ? ` in ${secs} s` : ` (${secs} s)`}${note ? ` - ${note}` : ''}`;
    const bar = `<div class="il-progress"><progress value="${count}" max="${total}"></progress> <span>${escapeHtml(text)}</span></div>`;
    live.show({ 'text/html': bar, 'text/plain': text });
  };
  render('', false);
  return {
    tick(n = 1, note = '') {
      count += n;
      const now = performance.now();
      if (now - last > 250 || count >= total) {
        last = now;
        render(note, false);
      }
    },
    done(note = '') {
      render(note, true);
    },
  };
}
