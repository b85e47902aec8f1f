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
import * as path from 'node:path';

import { describeFigure, figureSource, normalizeSources, sourceLabel, type Figure, type SourceSpec } from './figures';
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
//
// Where plotly.js comes from. A chart's output never carries plotly.js (4.8 MB); it is one bundle:
//   - application/vnd.plotly.v1+json: JupyterLab with the jupyterlab-plotly extension draws this
//     with the extension's own plotly.js;
//   - text/html: a div and a small script that draws with `window.Plotly`, loading plotly.js on
//     demand when the page has none, once per page: inside a Jupyter page (classic Notebook, or
//     JupyterLab without the extension) from `<base>files/<notebook's folder>/plotly.min.js`, a copy
//     the server serves beside the notebook (put there by `npm run notebook`, by the lesson runner
//     beside its executed notebooks, and by the kernel itself when it draws a chart); on any other
//     page from `plotly.min.js` beside the page (nbconvert HTML written next to the executed
//     notebook). A reloaded page or a fresh tab loads it again by itself: nothing depends on what
//     the kernel sent before. If no copy is found the div says where it looked;
//   - text/plain: a one-line summary.
// Jupyter runs an output's scripts only in trusted notebooks: outputs you produced live are
// trusted, and the lesson runner signs its executed copies (`jupyter trust`), so all of these
// draw when reopened; where scripts do not run, the chart's div says what to do.
// The lesson site (scripts/lessons/render.ts) draws the JSON with plotly.min.js copied next to
// its pages, loaded by each page's head: offline, no loader needed.

let plotCounter = 0;

/** The file name the chart HTML looks for beside the notebook (or the HTML page). */
export const PLOTLY_FILE = 'plotly.min.js';

/** The plotly.js bundle shipped in node_modules (offline). */
export function plotlyJsPath(): string {
  return require.resolve('plotly.js-dist-min');
}

/** plotly.js source, to inline into a standalone page. */
export function plotlyJsSource(): string {
  return fs.readFileSync(plotlyJsPath(), 'utf8');
}

/**
 * Put plotly.min.js into `dir` (where a Jupyter server or an HTML page finds it), unless the same
 * file is already there. Returns the path, or null when `dir` is not writable.
 */
export function copyPlotlyJs(dir: string): string | null {
  const src = plotlyJsPath();
  const dst = path.join(dir, PLOTLY_FILE);
  try {
    if (fs.existsSync(dst) && fs.statSync(dst).size === fs.statSync(src).size) return dst;
    fs.copyFileSync(src, dst);
    return dst;
  } catch {
    return null;
  }
}

let besideNotebook = false;

/** In a kernel: make sure the notebook's folder (the kernel's working directory) holds plotly.min.js. */
function ensurePlotlyBesideNotebook(): void {
  if (besideNotebook || !inNotebook()) return;
  besideNotebook = true;
  copyPlotlyJs(process.cwd());
}

// The loader inside each chart's HTML (ES5, no dependencies). `hint`: the notebook's folder
// relative to the server root when the kernel knows it (jupyter_server sets JPY_SESSION_NAME).
const LOADER = String.raw`function ilPlotly(hint){
var w=window,P=w.__inferenceLabPlotly;if(w.Plotly)return Promise.resolve(w.Plotly);if(P)return P;
var b=document.body,cfg=document.getElementById('jupyter-config-data'),base=null,dirs=[],urls=[];
var dec=function(s){try{return decodeURIComponent(s);}catch(e){return s;}};
var dir=function(p){return p.split('/').slice(0,-1).join('/');};
if(b&&b.getAttribute('data-base-url')!==null){base=dec(b.getAttribute('data-base-url'));var np=b.getAttribute('data-notebook-path');if(np)dirs.push(dir(dec(np)));}
else if(cfg){try{base=JSON.parse(cfg.textContent).baseUrl||'/';}catch(e){base='/';}}
if(base!==null){if(hint!==null)dirs.unshift(hint);var m=/\/(?:tree|notebooks)\/(.+\.ipynb)$/.exec(dec(location.pathname));if(m)dirs.push(dir(m[1]));
if(!dirs.length)dirs.push('');if(base.slice(-1)!=='/')base+='/';
dirs.forEach(function(d){var u=base+'files/'+(d?d.split('/').map(encodeURIComponent).join('/')+'/':'')+'${PLOTLY_FILE}';if(urls.indexOf(u)<0)urls.push(u);});}
else urls.push('${PLOTLY_FILE}');
P=w.__inferenceLabPlotly=new Promise(function(ok,no){var i=0;(function next(){
if(w.Plotly)return ok(w.Plotly);if(i>=urls.length){w.__inferenceLabPlotly=null;return no(urls);}
var s=document.createElement('script');s.src=urls[i++];s.onload=function(){w.Plotly?ok(w.Plotly):next();};
s.onerror=function(){s.remove();next();};document.head.appendChild(s);})();});
return P;}`.replace(/\n/g, '');

/**
 * HTML that draws `fig`: a div and an inline script that draws with `window.Plotly`, loading
 * plotly.js on demand (see "Where plotly.js comes from" above). With `inlineLibrary` the
 * plotly.js source comes first, for a standalone page.
 */
export function figureHtml(fig: Figure, opts: { id?: string; inlineLibrary?: boolean; served?: string | null } = {}): string {
  const id = opts.id ?? `il-plot-${process.pid}-${Date.now().toString(36)}-${plotCounter++}`;
  const height = typeof fig.layout.height === 'number' ? fig.layout.height : 420;
  const lib = opts.inlineLibrary ? `<script data-il-plotly-lib="1">${plotlyJsSource()}</script>\n` : '';
  const config = { responsive: true, displaylogo: false, ...fig.config };
  const missing =
    `plotly.js was not found (looked for ${PLOTLY_FILE} at: ' + u.join(', ') + '). ` +
    `Start Jupyter with npm run notebook, or put node_modules/plotly.js-dist-min/${PLOTLY_FILE} beside this notebook or page, then run the cell again.`;
  return (
    `${lib}<div id="${escapeHtml(id)}" class="il-plot" style="width:100%;height:${height}px">${escapeHtml(placeholder(fig))}</div>\n` +
    sourceHtml(figureSource(fig)) +
    `<script>(function(){${LOADER}var f=${jsonForScript({ data: fig.data, layout: fig.layout, config })};` +
    `var el=document.getElementById(${jsonForScript(id)});if(!el)return;` +
    `ilPlotly(${jsonForScript(opts.served ?? null)}).then(function(P){el.textContent='';P.newPlot(el,f.data,f.layout,f.config);},` +
    `function(u){el.style.height='auto';el.textContent='${missing}';});})();</script>`
  );
}

/**
 * The "Source: ..." label under a chart or table (see "where a figure's numbers come from" in
 * figures.ts); empty when no source was given. `data-source` lists the kinds, for tests.
 */
export function sourceHtml(spec: SourceSpec): string {
  const src = normalizeSources(spec);
  if (!src.length) return '';
  const kinds = [...new Set(src.map((s) => s.kind))].join(' ');
  return `<div class="il-source" data-source="${escapeHtml(kinds)}" style="font-size:12px;color:#666;margin:2px 0 8px">${escapeHtml(sourceLabel(src))}</div>\n`;
}

/** What the chart's div says until its script draws it (it stays where scripts do not run). */
function placeholder(fig: Figure): string {
  const title = (fig.layout.title as { text?: string } | undefined)?.text;
  return `Chart${title ? ` "${title}"` : ''}: a script draws it; if this text stays, run the cell again or trust the notebook (File > Trust Notebook).`;
}

/** The notebook's folder relative to the Jupyter server's root, when the server told the kernel. */
function servedFolder(env: NodeJS.ProcessEnv = process.env): string | null {
  const session = env.JPY_SESSION_NAME;
  if (!session || !session.endsWith('.ipynb') || path.isAbsolute(session)) return null;
  return session.split('/').slice(0, -1).join('/');
}

/** The bundle for a figure: plotly JSON, HTML that loads plotly.js on demand, text summary. */
export function figureBundle(fig: Figure): MimeBundle {
  ensurePlotlyBesideNotebook();
  return {
    'application/vnd.plotly.v1+json': { data: fig.data, layout: fig.layout, config: fig.config ?? {} },
    'text/html': figureHtml(fig, { served: servedFolder() }),
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
export function showTable(rows: readonly Record<string, Cell>[], opts: TableOptions = {}): void {
  displayBundle(tableBundle(rows, opts));
}

export interface TableOptions {
  caption?: string;
  /** significant digits for numbers (default 3) */
  digits?: number;
  /** where the numbers came from: a "Source: ..." label under the table (see FigureSource) */
  source?: SourceSpec;
}

/** The bundle showTable sends: an HTML table (every cell escaped) and aligned text. */
export function tableBundle(rows: readonly Record<string, Cell>[], opts: TableOptions = {}): MimeBundle {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: Cell | undefined) => (v === undefined ? '' : typeof v === 'number' ? formatNumber(v, opts.digits ?? 3) : v);
  const body = rows.map((r) => cols.map((c) => cell(r[c])));
  const html =
    `<table class="il-table">${opts.caption ? `<caption>${escapeHtml(opts.caption)}</caption>` : ''}` +
    `<thead><tr>${cols.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr></thead>` +
    `<tbody>${body.map((r) => `<tr>${r.map((v) => `<td>${escapeHtml(v)}</td>`).join('')}</tr>`).join('')}</tbody></table>` +
    (opts.source !== undefined ? sourceHtml(opts.source).trimEnd() : '');
  const widths = cols.map((c, i) => Math.max(c.length, ...body.map((r) => r[i].length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i])).join('  ');
  const text = [opts.caption ?? '', line(cols), ...body.map(line), opts.source !== undefined ? sourceLabel(opts.source) : '']
    .filter((l) => l !== '')
    .join('\n');
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
