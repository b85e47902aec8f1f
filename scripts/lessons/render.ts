// Render executed notebooks into a static site: one page per lesson and an index, navigation,
// code, outputs (text, HTML, markdown, plotly charts), the machine on every page. Works from
// file:// with no network: plotly.js is copied next to the pages and loaded by a relative path;
// math ($…$, $$…$$) is rendered to HTML at build time by KaTeX, whose CSS and fonts ship in
// katex/ beside the pages. Output text is escaped; markdown produced by code has its raw HTML
// escaped too, so generated model text cannot become markup.
//
// Reading aids: tables scroll inside the content column instead of widening it; a long code cell
// shows its key lines (the lines a cell's metadata names, or the cell with long function and
// block bodies folded) and the whole cell one click away; each chart keeps its "Source: ..."
// label (lib/viz: ChartOptions.source). The index shows, per lesson, its first paragraph and its
// key chart: the first chart of a cell tagged `key-chart` (cell metadata tags), else its first chart.

import * as fs from 'node:fs';
import * as path from 'node:path';

import { escapeHtml, figureHtml, plotlyJsPath, type Figure, type MachineInfo } from '../../lib';
import { ROOT } from './setup';

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
  /** its executed solution notebook (notebooks/solutions/<slug>.ipynb): folded under each exercise */
  solutions?: Notebook;
}

export interface SiteInfo {
  machine: MachineInfo | null;
  mode: string;
  date: string;
  commit?: string | null;
}

const text = (m: MultiLine | undefined): string => (Array.isArray(m) ? m.join('') : (m ?? ''));

/** "3. KV-cache optimizations" -> { number: '3', name: 'KV-cache optimizations' } (number '' when there is none). */
export function splitTitle(title: string): { number: string; name: string } {
  const m = /^(?:lesson\s+)?(\d+)[.:)]?\s+(.+)$/i.exec(title.trim());
  return m ? { number: m[1], name: m[2] } : { number: '', name: title.trim() };
}

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
  const backend = m.backend
    ? `, tfjs ${m.backend.backend}${m.backend.backend === 'wasm' && m.backend.wasm ? ` (SIMD ${m.backend.wasm.simd ? 'on' : 'off'}, ${m.backend.wasm.threads} thread${m.backend.wasm.threads === 1 ? '' : 's'})` : ''}`
    : '';
  const adapter = m.backend?.adapter
    ? `, GPU ${[m.backend.adapter.vendor, m.backend.adapter.architecture, m.backend.adapter.description].filter(Boolean).join(' ')}`
    : '';
  return `${m.cpuModel}, ${m.cpuCores} cores, ${gib} GiB RAM, ${m.os} ${m.arch}, Node ${m.node}${backend}${adapter}`;
}

// ---- markdown

type MarkedLike = { parse(src: string, opts: { async: false }): string };
let markedCells: MarkedLike | null = null;
let markedOutputs: MarkedLike | null = null;

/**
 * Load marked (ESM-only) once, with KaTeX for $…$ and $$…$$ (rendered to HTML here, at build
 * time; `nonStandard` also takes math right after a bracket, "($x$)", as Jupyter's MathJax does).
 * Outputs get a renderer that escapes raw HTML.
 */
export async function loadMarked(): Promise<void> {
  if (markedCells && markedOutputs) return;
  const { Marked } = await import('marked');
  const markedKatex = (await import('marked-katex-extension')).default;
  const math = () => markedKatex({ throwOnError: false, nonStandard: true, output: 'html' });
  markedCells = new Marked({ gfm: true }).use(math()) as unknown as MarkedLike;
  markedOutputs = new Marked({ gfm: true, renderer: { html: ({ text: t }: { text: string }) => escapeHtml(t) } }).use(
    math(),
  ) as unknown as MarkedLike;
}

function md(src: string, kind: 'cell' | 'output'): string {
  const m = kind === 'cell' ? markedCells : markedOutputs;
  if (!m) throw new Error('call loadMarked() first');
  return wrapTables(m.parse(src, { async: false }));
}

/** Every table inside a div that scrolls sideways, so a wide table never widens the page. */
export function wrapTables(html: string): string {
  return html.replace(/<table\b/g, '<div class="table-wrap"><table').replace(/<\/table>/g, '</table></div>');
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
  if (plot)
    return `<div class="out plot">${figureHtml({ data: plot.data, layout: plot.layout, config: plot.config }, { id: `plot-${plotId++}` })}</div>`;
  if (typeof data['text/html'] === 'string' || Array.isArray(data['text/html'])) {
    // html outputs come from lib/viz helpers, which escape every piece of text they carry; drop an
    // inlined plotly.js (the page loads it once)
    const html = text(data['text/html'] as MultiLine).replace(/<script data-il-plotly-lib="1">[\s\S]*?<\/script>/g, '');
    return `<div class="out html">${wrapTables(html)}</div>`;
  }
  if (data['text/markdown'] !== undefined)
    return `<div class="out markdown">${md(text(data['text/markdown'] as MultiLine), 'output')}</div>`;
  if (typeof data['image/png'] === 'string')
    return `<div class="out image"><img alt="" src="data:image/png;base64,${escapeHtml(String(data['image/png']).trim())}"></div>`;
  if (data['text/plain'] !== undefined) return `<pre class="out text">${escapeHtml(text(data['text/plain'] as MultiLine))}</pre>`;
  return '';
}

// ---- code cells: long ones folded to their key lines

/** Cells longer than this many lines are folded. */
export const FOLD_LINES = 25;
/** A block body longer than this many lines is folded to one line. */
const FOLD_BODY = 3;

/**
 * The key lines of a long cell, or null when the cell is short enough to show whole. A cell can
 * name them: metadata `{"inference_lab": {"key_lines": [[first, last], ...]}}` (1-based, inclusive).
 * Otherwise the bodies of top-level functions, classes and blocks (for, if, try, `{ ... }`) longer
 * than a few lines fold to one "..." line, and every other line (the calls, the displays) stays.
 */
export function keyLines(src: string, metadata?: Record<string, unknown>): string | null {
  const lines = src.replace(/\n+$/, '').split('\n');
  if (lines.length <= FOLD_LINES) return null;
  const marked = (metadata?.inference_lab as { key_lines?: unknown } | undefined)?.key_lines;
  if (Array.isArray(marked) && marked.length) {
    const out: string[] = [];
    let next = 1;
    for (const r of marked as [number, number][]) {
      const [a, b] = [Math.max(1, r[0]), Math.min(lines.length, r[1] ?? r[0])];
      if (a > next) out.push(`// ... ${a - next} line${a - next === 1 ? '' : 's'}`);
      out.push(...lines.slice(a - 1, b));
      next = b + 1;
    }
    if (next <= lines.length) out.push(`// ... ${lines.length - next + 1} more line${lines.length - next === 0 ? '' : 's'}`);
    return out.join('\n');
  }
  const out: string[] = [];
  let depth = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const after = depth + braceDelta(line);
    const header = /\b(function|class)\b|=>\s*\{\s*$|^\s*\{\s*$|^(for|while|if|try|else|do)\b|^\}\s*(else|catch|finally)\b/.test(line);
    if (depth === 0 && after > 0 && header) {
      // find where this block closes
      let d = after;
      let j = i + 1;
      while (j < lines.length && d > 0) d += braceDelta(lines[j++]);
      const body = j - 1 - (i + 1); // lines strictly between the header and the closing line
      if (body > FOLD_BODY) {
        const indent = /^\s*/.exec(lines[i + 1] ?? '')?.[0] || '  ';
        out.push(line, `${indent}// ... ${body} lines`, lines[j - 1]);
        depth = d;
        i = j - 1;
        continue;
      }
    }
    out.push(line);
    depth = after;
  }
  return out.length < lines.length ? out.join('\n') : null;
}

/** { minus } on a line, outside strings and // comments (good enough for folding). */
function braceDelta(line: string): number {
  let d = 0;
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote) {
      if (ch === '\\') i++;
      else if (ch === quote) quote = null;
      else if (quote === '`' && ch === '$' && line[i + 1] === '{') {
        d++;
        i++;
      }
      continue;
    }
    if (ch === '/' && line[i + 1] === '/') break;
    if (ch === '"' || ch === "'" || ch === '`') quote = ch;
    else if (ch === '{') d++;
    else if (ch === '}') d--;
  }
  return d;
}

/** A code cell: whole, or its key lines with the whole cell one click away. */
export function renderCode(src: string, metadata?: Record<string, unknown>): string {
  const pre = (s: string) => `<pre class="code"><code class="language-ts">${escapeHtml(s)}</code></pre>`;
  const key = keyLines(src, metadata);
  if (key === null) return pre(src);
  const n = src.replace(/\n+$/, '').split('\n').length;
  return `<div class="code-fold">${pre(key)}<details><summary>Show the whole cell (${n} lines)</summary>${pre(src)}</details></div>`;
}

// ---- exercises: a solution folded under each exercise's cell

/** The exercise a code cell checks: `lesson1.bytesPerToken` in `check(lesson1.bytesPerToken, ...)` or `checkPrediction(...)`. */
export function exerciseOf(src: string): string | null {
  const m = /\bcheck(?:Prediction)?\(\s*(lesson\d+\.\w+)/.exec(src);
  return m ? m[1] : null;
}

/**
 * A solution notebook's cells per exercise: each code cell that checks an exercise, with the
 * markdown cells right before it (the reasoning; headings left out).
 */
export function solutionCells(nb: Notebook): Map<string, NotebookCell[]> {
  const out = new Map<string, NotebookCell[]>();
  let notes: NotebookCell[] = [];
  for (const c of nb.cells) {
    if (c.cell_type === 'markdown') {
      notes = /^#{1,6}\s/.test(text(c.source).trim()) ? [] : [...notes, c]; // a heading starts over: the lesson shows its own
      continue;
    }
    const id = c.cell_type === 'code' ? exerciseOf(text(c.source)) : null;
    if (id) out.set(id, [...(out.get(id) ?? []), ...notes, c]);
    notes = [];
  }
  return out;
}

function renderCell(c: NotebookCell, parts: string[]): void {
  if (c.cell_type === 'markdown') parts.push(`<section class="md">${md(text(c.source), 'cell')}</section>`);
  else if (c.cell_type === 'code') {
    const src = text(c.source);
    if (src.trim()) parts.push(renderCode(src, c.metadata));
    const outs = (c.outputs ?? []).map(renderOutput).filter(Boolean);
    if (outs.length) parts.push(`<div class="outputs">${outs.join('\n')}</div>`);
  }
}

/** A notebook's cells as HTML; with its solutions, each exercise cell is followed by its solution, folded. */
export function renderCells(nb: Notebook, solutions?: Notebook): string {
  const parts: string[] = [];
  const solved = solutions ? solutionCells(solutions) : new Map<string, NotebookCell[]>();
  for (const c of nb.cells) {
    renderCell(c, parts);
    const id = c.cell_type === 'code' ? exerciseOf(text(c.source)) : null;
    const sol = id ? solved.get(id) : undefined;
    if (sol) {
      const inner: string[] = [];
      for (const s of sol) renderCell(s, inner);
      parts.push(`<details class="solution"><summary>Show solution</summary>${inner.join('\n')}</details>`);
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
ol.lessons { list-style: none; padding-left: 0; } ol.lessons li { margin: .3rem 0; display:flex; gap:.4rem; }
.num { color: var(--muted); font-variant-numeric: tabular-nums; min-width: 1.2em; text-align:right; }
nav.toc a { color: var(--accent); text-decoration:none; } nav.toc .current { font-weight: 700; }
main { flex: 1; min-width: 0; max-width: 980px; padding: 1rem 2rem 3rem; overflow-wrap: break-word; }
pre { overflow-x:auto; padding:.6rem .8rem; border-radius:4px; font-size:.85rem; line-height:1.45; }
pre.code { background: var(--bg-code); border-left: 3px solid var(--accent); }
.code-fold pre.code { margin-bottom: 0; }
.code-fold details { margin: 0 0 1rem 0; font-size: .85rem; }
.code-fold summary { cursor: pointer; color: var(--accent); padding: .2rem .8rem; }
.code-fold details[open] summary { margin-bottom: .3rem; }
.outputs { margin: -.4rem 0 1.2rem 0; padding-left:.8rem; border-left:3px solid var(--line); min-width: 0; }
pre.out { background:#fff; margin:.3rem 0; white-space: pre-wrap; }
pre.stderr { color:#8a5a00; } pre.error { color:#b00020; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: .5rem 0; }
table { border-collapse: collapse; font-size:.9rem; }
th, td { border:1px solid var(--line); padding:.25rem .6rem; text-align:right; } th { background:#fafafa; }
td:first-child, th:first-child { text-align:left; }
td { overflow-wrap: normal; } td:first-child { min-width: 8em; }
caption { caption-side: top; text-align:left; color: var(--muted); font-size:.85rem; }
.il-generated { background:#fffbe6; } .il-label { color: var(--muted); font-size:.85rem; }
.il-plot { max-width: 100%; }
.il-source { color: var(--muted); font-size: .8rem; margin: .15rem 0 .6rem; }
.katex-display { overflow-x: auto; overflow-y: hidden; padding: .2rem 0; }
.il-check { padding: .3rem .6rem; border-radius: 4px; margin: .3rem 0; white-space: pre-wrap; }
.il-check.il-pass { background: #e9f6ec; color: #1b5e20; } .il-check.il-fail { background: #fdecea; color: #8a1c12; }
.il-check.il-todo { background: #f4f4f4; color: var(--muted); }
.il-check table { margin-top: .3rem; } .il-check th, .il-check td { text-align: left; }
details.solution { margin: -.6rem 0 1.4rem; padding: .2rem .8rem; border: 1px dashed var(--line); border-radius: 4px; }
details.solution summary { cursor: pointer; color: var(--accent); font-weight: 600; }
details.solution[open] summary { margin-bottom: .4rem; }
footer.pager { display:flex; justify-content:space-between; gap:1rem; margin-top:2rem; border-top:1px solid var(--line); padding-top:1rem; }
footer.pager a { color: var(--accent); text-decoration:none; }
.meta { color: var(--muted); font-size:.85rem; }
.tutorial { border-left: 3px solid var(--line); padding: .2rem .9rem; color: #333; }
.lesson-card { border-top: 1px solid var(--line); padding: 1rem 0 .5rem; }
.lesson-card h2 { margin: 0 0 .3rem; font-size: 1.25rem; } .lesson-card h2 a { color: var(--accent); text-decoration: none; }
.lesson-card .num { margin-right: .4rem; }
/* below ~1100 px the lesson list goes above the lesson, so the column keeps the width charts are laid out for */
@media (max-width: 1100px) {
  .layout { flex-direction: column; }
  nav.toc { width: auto; border-right: none; border-bottom: 1px solid var(--line); padding: .5rem 1rem; }
  ol.lessons { display: flex; flex-wrap: wrap; gap: .2rem 1.2rem; margin: .3rem 0; }
  main { padding: 1rem 1.2rem 3rem; }
}
`;

/** A lesson's name with its number shown once: "<span class=num>3</span> KV-cache optimizations". */
function numberedTitle(title: string): string {
  const { number, name } = splitTitle(title);
  return `${number ? `<span class="num">${escapeHtml(number)}</span> ` : ''}<span>${escapeHtml(name)}</span>`;
}

function page(opts: { title: string; body: string; lessons: Lesson[]; current: string | null; site: SiteInfo }): string {
  const { lessons, current, site } = opts;
  const toc = lessons
    .map(
      (l) => `<li${l.slug === current ? ' class="current"' : ''}><a href="${escapeHtml(l.slug)}.html">${numberedTitle(l.title)}</a></li>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(opts.title)} - inference-lab</title>
<link rel="stylesheet" href="katex/katex.min.css">
<link rel="stylesheet" href="style.css">
<script src="plotly.min.js"></script>
</head><body>
<header class="top"><a href="index.html">inference-lab lessons</a> &middot; run on <span class="machine">${escapeHtml(describeMachine(site.machine))}</span> &middot; mode ${escapeHtml(site.mode)} &middot; ${escapeHtml(site.date)}${site.commit ? ` &middot; commit ${escapeHtml(site.commit.slice(0, 10))}` : ''}</header>
<div class="layout"><nav class="toc"><strong>Lessons</strong><ol class="lessons">${toc}</ol></nav>
<main>
${opts.body}
</main></div>
</body></html>
`;
}

/** KaTeX's stylesheet and its woff2 fonts (every browser that runs plotly.js reads woff2), into `dir`/katex. */
function copyKatexAssets(dir: string): void {
  const dist = path.dirname(require.resolve('katex/dist/katex.min.css'));
  const out = path.join(dir, 'katex');
  fs.mkdirSync(path.join(out, 'fonts'), { recursive: true });
  fs.copyFileSync(path.join(dist, 'katex.min.css'), path.join(out, 'katex.min.css'));
  for (const f of fs.readdirSync(path.join(dist, 'fonts'))) {
    if (f.endsWith('.woff2')) fs.copyFileSync(path.join(dist, 'fonts', f), path.join(out, 'fonts', f));
  }
}

// ---- the index: what the course is, and each lesson's first paragraph and key chart

/** The lesson's first paragraph after its title (markdown source), or ''. */
export function lessonBlurb(nb: Notebook): string {
  let seenTitle = false;
  for (const c of nb.cells) {
    if (c.cell_type !== 'markdown') continue;
    for (const block of text(c.source).split(/\n\s*\n/)) {
      const b = block.trim();
      if (!b) continue;
      if (/^#\s/.test(b)) {
        seenTitle = true;
        const rest = b.split('\n').slice(1).join('\n').trim(); // a paragraph right under the heading line
        if (rest && !/^[#>|`\-*]/.test(rest)) return rest;
        continue;
      }
      if (seenTitle && !/^(#|>|\||```|[-*+] |\d+\. |\$\$|<)/.test(b)) return b;
    }
  }
  return '';
}

/** The lesson's key chart: the first chart of a cell tagged `key-chart`, else its first chart. */
export function keyChart(nb: Notebook): Figure | null {
  const charts = (c: NotebookCell) =>
    (c.outputs ?? []).map((o) => o.data?.['application/vnd.plotly.v1+json'] as Figure | undefined).filter((f): f is Figure => !!f);
  const code = nb.cells.filter((c) => c.cell_type === 'code');
  const tagged = code.find((c) => {
    const tags = c.metadata?.tags;
    return Array.isArray(tags) && tags.includes('key-chart') && charts(c).length > 0;
  });
  for (const c of tagged ? [tagged] : code) {
    const f = charts(c)[0];
    if (f) return f;
  }
  return null;
}

interface TutorialSource {
  title: string;
  description: string;
  shortName: string;
}

/** What "the tutorial" is: data/seed-claims.json's source (the lessons quote from the same file). */
function tutorialSource(): TutorialSource {
  const file = path.join(ROOT, 'data', 'seed-claims.json');
  try {
    const s = (JSON.parse(fs.readFileSync(file, 'utf8')) as { source?: Partial<TutorialSource> }).source;
    if (s?.title && s.description) return { title: s.title, description: s.description, shortName: s.shortName ?? 'the tutorial' };
  } catch {
    // fall through
  }
  return {
    title: 'PyTorch Tutorial 21: Modern LLM Inference Optimization (2025)',
    description: 'a widely shared PyTorch notebook tutorial on LLM inference optimization.',
    shortName: 'the tutorial',
  };
}

function indexBody(lessons: Lesson[]): string {
  const t = tutorialSource();
  const cards = lessons
    .map((l) => {
      const blurb = lessonBlurb(l.notebook);
      const chart = keyChart(l.notebook);
      return (
        `<section class="lesson-card"><h2><a href="${escapeHtml(l.slug)}.html">${numberedTitle(l.title)}</a></h2>` +
        (blurb ? `<div class="blurb">${md(blurb, 'cell')}</div>` : '') +
        (chart
          ? `<div class="out plot key-chart">${figureHtml({ data: chart.data, layout: chart.layout, config: chart.config }, { id: `plot-${plotId++}` })}</div>`
          : '') +
        `<p class="meta"><a href="${escapeHtml(l.slug)}.html">Read lesson ${escapeHtml(splitTitle(l.title).number || l.slug)}</a>${l.seconds !== undefined ? ` (ran in ${l.seconds.toFixed(0)} s)` : ''}</p></section>`
      );
    })
    .join('\n');
  return `<h1>inference-lab: LLM inference, measured</h1>
<p>Each lesson is a TypeScript notebook that runs a Llama-architecture model on TensorFlow.js and measures what each
inference optimization buys <em>on the machine named above</em>, beside records from an NVIDIA H200 and a cost model of a
real deployment; every chart says which of the three its numbers come from. Rebuild this site with your own numbers:
<code>npm ci &amp;&amp; npm start</code>.</p>
<p class="tutorial">When a lesson says &ldquo;${escapeHtml(t.shortName)}&rdquo; it means <cite>${escapeHtml(t.title)}</cite>, ${escapeHtml(t.description)}
The lessons follow its outline and quote its claims verbatim, beside our measurements.</p>
${cards}`;
}

/** Write the site: index.html, <slug>.html per lesson, style.css, plotly.min.js, katex/. Returns the files written. */
export async function renderSite(lessons: Lesson[], outDir: string, site: SiteInfo): Promise<string[]> {
  await loadMarked();
  fs.mkdirSync(outDir, { recursive: true });
  fs.copyFileSync(plotlyJsPath(), path.join(outDir, 'plotly.min.js'));
  copyKatexAssets(outDir);
  fs.writeFileSync(path.join(outDir, 'style.css'), CSS.trim() + '\n'); // one stylesheet for every page
  const written: string[] = [];
  lessons.forEach((l, i) => {
    const prev = lessons[i - 1];
    const next = lessons[i + 1];
    const pager =
      `<footer class="pager"><span>${prev ? `<a rel="prev" href="${escapeHtml(prev.slug)}.html">&larr; ${numberedTitle(prev.title)}</a>` : ''}</span>` +
      `<span>${next ? `<a rel="next" href="${escapeHtml(next.slug)}.html">${numberedTitle(next.title)} &rarr;</a>` : ''}</span></footer>`;
    const meta = `<p class="meta">Executed on this machine${l.seconds !== undefined ? ` in ${l.seconds.toFixed(0)} s` : ''}; every number below comes from that run unless its label says otherwise. Source: <code>notebooks/${escapeHtml(l.slug)}.ipynb</code></p>`;
    const file = path.join(outDir, `${l.slug}.html`);
    const solved = l.solutions ? ` Solutions to its exercises are folded under each one (<code>notebooks/solutions/${escapeHtml(l.slug)}.ipynb</code>, executed with the lesson).` : '';
    const metaFull = solved ? meta.replace(/<\/p>$/, `${solved}</p>`) : meta;
    fs.writeFileSync(file, page({ title: l.title, body: metaFull + renderCells(l.notebook, l.solutions) + pager, lessons, current: l.slug, site }));
    written.push(file);
  });
  const index = path.join(outDir, 'index.html');
  fs.writeFileSync(index, page({ title: 'Lessons', body: indexBody(lessons), lessons, current: null, site }));
  written.push(index);
  return written;
}

export function readNotebook(file: string): Notebook {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Notebook;
}
