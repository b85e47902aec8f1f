// Render executed notebooks into a static site: one page per lesson and an index, navigation,
// code, outputs (text, HTML, markdown, plotly charts), the machine on every page. Works from
// file:// with no network: plotly.js is copied next to the pages and loaded by a relative path.
// Output text is escaped; markdown produced by code has its raw HTML escaped too, so generated
// model text cannot become markup.

import * as fs from 'node:fs';
import * as path from 'node:path';

import { escapeHtml, figureHtml, plotlyJsPath, type Figure, type MachineInfo } from '../../lib';

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

// ---- notebook format (nbformat 4, the parts we read)

type MultiLine = string | string[];
export interface NotebookOutput {
  output_type: 'stream' | 'display_data' | 'execute_result' | 'error' | 'update_display_data';
  name?: string;
  text?: MultiLine;
  data?: Record<string, unknown>;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}
export interface NotebookCell {
  cell_type: 'markdown' | 'code' | 'raw';
  source: MultiLine;
  outputs?: NotebookOutput[];
  metadata?: Record<string, unknown>;
}
export interface Notebook {
  cells: NotebookCell[];
  metadata: Record<string, unknown>;
  nbformat: number;
  nbformat_minor: number;
}

export interface Lesson {
  /** file name without .ipynb: the page is <slug>.html */
  slug: string;
  title: string;
  notebook: Notebook;
  /** seconds it took to execute */
  seconds?: number;
}

export interface SiteInfo {
  machine: MachineInfo | null;
  mode: string;
  date: string;
  commit?: string | null;
}

const text = (m: MultiLine | undefined): string => (Array.isArray(m) ? m.join('') : (m ?? ''));

/** The lesson's title: its first markdown heading. */
export function lessonTitle(nb: Notebook, fallback: string): string {
  for (const c of nb.cells) {
    if (c.cell_type !== 'markdown') continue;
    const m = /^#\s+(.+)$/m.exec(text(c.source));
    if (m) return m[1].trim();
  }
  return fallback;
}

export function describeMachine(m: MachineInfo | null): string {
  if (!m) return 'unknown machine';
  const gib = (m.totalMemoryBytes / 2 ** 30).toFixed(0);
  const backend = m.backend ? `, tfjs ${m.backend.backend}${m.backend.backend === 'wasm' && m.backend.wasm ? ` (SIMD ${m.backend.wasm.simd ? 'on' : 'off'}, ${m.backend.wasm.threads} thread${m.backend.wasm.threads === 1 ? '' : 's'})` : ''}` : '';
  const adapter = m.backend?.adapter ? `, GPU ${[m.backend.adapter.vendor, m.backend.adapter.architecture, m.backend.adapter.description].filter(Boolean).join(' ')}` : '';
  return `${m.cpuModel}, ${m.cpuCores} cores, ${gib} GiB RAM, ${m.os} ${m.arch}, Node ${m.node}${backend}${adapter}`;
}

// ---- markdown

type MarkedLike = { parse(src: string, opts: { async: false }): string };
let markedCells: MarkedLike | null = null;
let markedOutputs: MarkedLike | null = null;

/** Load marked (ESM-only) once; outputs get a renderer that escapes raw HTML. */
export async function loadMarked(): Promise<void> {
  if (markedCells && markedOutputs) return;
  const { Marked } = await import('marked');
  markedCells = new Marked({ gfm: true }) as unknown as MarkedLike;
  markedOutputs = new Marked({ gfm: true, renderer: { html: ({ text: t }: { text: string }) => escapeHtml(t) } }) as unknown as MarkedLike;
}

function md(src: string, kind: 'cell' | 'output'): string {
  const m = kind === 'cell' ? markedCells : markedOutputs;
  if (!m) throw new Error('call loadMarked() first');
  return m.parse(src, { async: false });
}

// ---- outputs

let plotId = 0;

/** One output as HTML: the richest MIME type we can show safely. */
export function renderOutput(o: NotebookOutput): string {
  if (o.output_type === 'stream') {
    return `<pre class="out stream ${o.name === 'stderr' ? 'stderr' : ''}">${escapeHtml(text(o.text))}</pre>`;
  }
  if (o.output_type === 'error') {
    const tb = (o.traceback ?? []).join('\n').replace(ANSI, '');
    return `<pre class="out error">${escapeHtml(`${o.ename}: ${o.evalue}\n${tb}`)}</pre>`;
  }
  const data = o.data ?? {};
  const plot = data['application/vnd.plotly.v1+json'] as Figure | undefined;
  if (plot) return `<div class="out plot">${figureHtml({ data: plot.data, layout: plot.layout, config: plot.config }, { id: `plot-${plotId++}` })}</div>`;
  if (typeof data['text/html'] === 'string' || Array.isArray(data['text/html'])) {
    // html outputs come from lib/viz helpers, which escape every piece of text they carry; drop an
    // inlined plotly.js (the page loads it once)
    const html = text(data['text/html'] as MultiLine).replace(/<script data-il-plotly-lib="1">[\s\S]*?<\/script>/g, '');
    return `<div class="out html">${html}</div>`;
  }
  if (data['text/markdown'] !== undefined) return `<div class="out markdown">${md(text(data['text/markdown'] as MultiLine), 'output')}</div>`;
  if (typeof data['image/png'] === 'string') return `<div class="out image"><img alt="" src="data:image/png;base64,${escapeHtml(String(data['image/png']).trim())}"></div>`;
  if (data['text/plain'] !== undefined) return `<pre class="out text">${escapeHtml(text(data['text/plain'] as MultiLine))}</pre>`;
  return '';
}

/** A notebook's cells as HTML. */
export function renderCells(nb: Notebook): string {
  const parts: string[] = [];
  for (const c of nb.cells) {
    if (c.cell_type === 'markdown') parts.push(`<section class="md">${md(text(c.source), 'cell')}</section>`);
    else if (c.cell_type === 'code') {
      const src = text(c.source);
      if (src.trim()) parts.push(`<pre class="code"><code class="language-ts">${escapeHtml(src)}</code></pre>`);
      const outs = (c.outputs ?? []).map(renderOutput).filter(Boolean);
      if (outs.length) parts.push(`<div class="outputs">${outs.join('\n')}</div>`);
    }
  }
  return parts.join('\n');
}

const CSS = `
:root { --fg:#1d1f21; --muted:#666; --line:#e3e3e3; --accent:#2457a6; --bg-code:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.6 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); }
header.top { padding: .6rem 1.2rem; border-bottom:1px solid var(--line); font-size:.85rem; color: var(--muted); }
header.top a { color: var(--accent); font-weight:600; text-decoration:none; }
.layout { display:flex; }
nav.toc { width: 250px; flex: none; padding: 1rem; border-right:1px solid var(--line); font-size:.9rem; }
nav.toc ol { padding-left: 1.2rem; } nav.toc li { margin: .3rem 0; }
nav.toc a { color: var(--accent); text-decoration:none; } nav.toc .current { font-weight: 700; }
main { flex: 1; min-width: 0; max-width: 980px; padding: 1rem 2rem 3rem; }
pre { overflow-x:auto; padding:.6rem .8rem; border-radius:4px; font-size:.85rem; line-height:1.45; }
pre.code { background: var(--bg-code); border-left: 3px solid var(--accent); }
.outputs { margin: -.4rem 0 1.2rem 0; padding-left:.8rem; border-left:3px solid var(--line); }
pre.out { background:#fff; margin:.3rem 0; white-space: pre-wrap; }
pre.stderr { color:#8a5a00; } pre.error { color:#b00020; }
table { border-collapse: collapse; margin:.5rem 0; font-size:.9rem; }
th, td { border:1px solid var(--line); padding:.25rem .6rem; text-align:right; } th { background:#fafafa; }
td:first-child, th:first-child { text-align:left; }
caption { caption-side: top; text-align:left; color: var(--muted); font-size:.85rem; }
.il-generated { background:#fffbe6; } .il-label { color: var(--muted); font-size:.85rem; }
footer.pager { display:flex; justify-content:space-between; margin-top:2rem; border-top:1px solid var(--line); padding-top:1rem; }
footer.pager a { color: var(--accent); text-decoration:none; }
.meta { color: var(--muted); font-size:.85rem; }
`;

function page(opts: { title: string; body: string; lessons: Lesson[]; current: string | null; site: SiteInfo }): string {
  const { lessons, current, site } = opts;
  const toc = lessons
    .map((l) => `<li${l.slug === current ? ' class="current"' : ''}><a href="${escapeHtml(l.slug)}.html">${escapeHtml(l.title)}</a></li>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(opts.title)} - inference-lab</title>
<link rel="stylesheet" href="style.css">
<script src="plotly.min.js"></script>
</head><body>
<header class="top"><a href="index.html">inference-lab lessons</a> &middot; run on <span class="machine">${escapeHtml(describeMachine(site.machine))}</span> &middot; mode ${escapeHtml(site.mode)} &middot; ${escapeHtml(site.date)}${site.commit ? ` &middot; commit ${escapeHtml(site.commit.slice(0, 10))}` : ''}</header>
<div class="layout"><nav class="toc"><strong>Lessons</strong><ol>${toc}</ol></nav>
<main>
${opts.body}
</main></div>
</body></html>
`;
}

/** Write the site: index.html, <slug>.html per lesson, style.css, plotly.min.js. Returns the files written. */
export async function renderSite(lessons: Lesson[], outDir: string, site: SiteInfo): Promise<string[]> {
  await loadMarked();
  fs.mkdirSync(outDir, { recursive: true });
  fs.copyFileSync(plotlyJsPath(), path.join(outDir, 'plotly.min.js'));
  fs.writeFileSync(path.join(outDir, 'style.css'), CSS.trim() + '\n'); // one stylesheet for every page
  const written: string[] = [];
  lessons.forEach((l, i) => {
    const prev = lessons[i - 1];
    const next = lessons[i + 1];
    const pager =
      `<footer class="pager"><span>${prev ? `<a rel="prev" href="${escapeHtml(prev.slug)}.html">&larr; ${escapeHtml(prev.title)}</a>` : ''}</span>` +
      `<span>${next ? `<a rel="next" href="${escapeHtml(next.slug)}.html">${escapeHtml(next.title)} &rarr;</a>` : ''}</span></footer>`;
    const meta = `<p class="meta">Executed on this machine${l.seconds !== undefined ? ` in ${l.seconds.toFixed(0)} s` : ''}; every number below comes from that run. Source: <code>notebooks/${escapeHtml(l.slug)}.ipynb</code></p>`;
    const file = path.join(outDir, `${l.slug}.html`);
    fs.writeFileSync(file, page({ title: l.title, body: meta + renderCells(l.notebook) + pager, lessons, current: l.slug, site }));
    written.push(file);
  });
  const list = lessons
    .map((l) => `<li><a href="${escapeHtml(l.slug)}.html">${escapeHtml(l.title)}</a>${l.seconds !== undefined ? ` <span class="meta">(ran in ${l.seconds.toFixed(0)} s)</span>` : ''}</li>`)
    .join('\n');
  const body = `<h1>inference-lab: LLM inference, measured</h1>
<p>Each lesson is a TypeScript notebook that runs a Llama-architecture model on TensorFlow.js and measures what each
inference optimization buys <em>on the machine named above</em>. Rebuild this site with your own numbers:
<code>npm ci &amp;&amp; npm start</code>.</p>
<ol>${list}</ol>`;
  const index = path.join(outDir, 'index.html');
  fs.writeFileSync(index, page({ title: 'Lessons', body, lessons, current: null, site }));
  written.push(index);
  return written;
}

export function readNotebook(file: string): Notebook {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Notebook;
}
