// The lesson site reads like a course: math rendered at build time (no raw $ or \frac left), no
// table, chart or formula wider than the content column, chart labels that do not overlap, a
// source label under every chart, long code cells folded with the whole cell one click away,
// titles numbered once, an index with each lesson's first paragraph and key chart, offline.
// Pages: every lesson notebook (its prose, code and math; outputs where build/lessons holds an
// executed copy) and a fixture lesson with wide tables, long-named charts and math in outputs.

import * as fs from 'node:fs';
import * as path from 'node:path';

import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  barChart,
  figureBundle,
  figureSource,
  lineChart,
  rooflineChart,
  sourceLabel,
  tableBundle,
  withSource,
  type MimeBundle,
} from '../lib/index';
import { listNotebooks } from '../scripts/lessons/main';
import {
  keyChart,
  keyLines,
  lessonBlurb,
  lessonTitle,
  readNotebook,
  renderSite,
  splitTitle,
  type Lesson,
  type Notebook,
  type NotebookCell,
} from '../scripts/lessons/render';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const ART = path.resolve('test-artifacts', 'site');
const noChromium = fs.existsSync(CHROMIUM) ? null : `${CHROMIUM} not found (apt-get install chromium)`;

const out = (b: MimeBundle): NonNullable<NotebookCell['outputs']>[number] => ({ output_type: 'display_data', data: b });
const code = (src: string, outputs: NotebookCell['outputs'] = [], metadata: Record<string, unknown> = {}): NotebookCell => ({
  cell_type: 'code',
  source: src,
  outputs,
  metadata,
});
const mdCell = (src: string): NotebookCell => ({ cell_type: 'markdown', source: src });

const wideRow = (i: number) =>
  Object.fromEntries([
    ['scheme', `int${i}-kivi-t64-r32 per-channel keys, per-token values`],
    ...Array.from({ length: 14 }, (_, c) => [`column with a long header ${c}`, 1234.5678 * (i + c)]),
  ]);

/** A lesson with what overflows most easily: wide tables, long chart names, display math, a long cell. */
function fixture(): Notebook {
  const longCell = [
    'const rows = byMode(4, 10); // rounds',
    'function helper(x: number): number {',
    ...Array.from({ length: 30 }, (_, i) => `  const v${i} = x * ${i}; // step ${i}`),
    '  return x;',
    '}',
    'for (let i = 0; i < 3; i++) {',
    '  helper(i);',
    '  helper(i + 1);',
    '  helper(i + 2);',
    '  helper(i + 3);',
    '  helper(i + 4);',
    '}',
    'display(lineChart(series, { title: "...", source: "here" }));',
  ].join('\n');
  const chart = lineChart(
    [
      { name: 'target (15.7M) measured decode on this machine', x: [1, 2, 4, 8], y: [3, 4, 5, 9] },
      { name: 'random-125m (SmolLM2-135M shapes), measured', x: [1, 2, 4, 8], y: [2, 3, 1, 4] },
      { name: 'Llama-3-8B shapes on an H200, BF16, modeled', x: [1, 2, 4, 8], y: [1, 2, 2, 3] },
      { name: 'H200 record, WebGPU fp32 captured step', x: [1, 2, 4, 8], y: [1.5, 2.5, 2, 1] },
    ],
    {
      title: 'Decode step time as the batch doubles: flat while bandwidth-bound, rising once compute-bound',
      x: { title: 'batch size B', log: true },
      y: { title: 'ms per step' },
      source: ['here', 'h200', { kind: 'modeled', detail: 'H200 BF16 roofline, Llama-3-8B shapes' }],
    },
  );
  const roof = rooflineChart(
    { bandwidthGBps: 12, peakGflops: 40 },
    [
      { name: 'decode B=1', intensity: 0.9, gflops: 9 },
      { name: 'decode B=8', intensity: 3.5, gflops: 30 },
      { name: 'prefill T=256', intensity: 60, gflops: 38 },
    ],
    { title: "This machine's roofline: decode sits on the bandwidth slope, prefill climbs to the compute roof", source: 'here' },
  );
  const bars = withSource(
    barChart(
      ['repetitive text', 'free text', 'code'],
      [
        { name: 'prompt lookup, gamma 4', values: [1.4, 0.9, 1.2], labels: ['1.4x', '0.9x', '1.2x'] },
        { name: 'draft model, gamma 3', values: [1.1, 1.0, 0.8] },
      ],
      { title: 'Speculative speedup', y: { title: 'x over plain decode' } },
    ),
    'h200',
  );
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {},
    cells: [
      mdCell(
        '# 7. Fixture lesson\n\nEach decode step reads every weight once: $t \\approx \\frac{W}{B}$ (lesson 1), and ($x^2$) in brackets too.',
      ),
      mdCell(
        'The KV cache holds\n\n$$\\text{KV bytes} = B \\cdot \\text{ctx} \\cdot 2 \\cdot L \\cdot H_{kv} \\cdot D \\cdot \\text{bytes} = 1 \\cdot 2048 \\cdot 2 \\cdot 32 \\cdot 8 \\cdot 128 \\cdot 2 + \\frac{\\sum_{i=0}^{n} x_i}{\\sqrt{d_k}} + \\frac{a}{b} + \\frac{c}{d} + \\frac{e}{f} + \\frac{g}{h}$$\n\n| a markdown table | with | many | wide | columns | to | scroll | instead | of | overflowing | the | column | at | all |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n| 123456789 | 123456789 | 123456789 | 123456789 | 123456789 | 123456789 | 123456789 | 123456789 | 123456789 | 123456789 | 123456789 | 123456789 | 123456789 | 123456789 |',
      ),
      code(longCell, [out(figureBundle(chart))], { tags: ['key-chart'] }),
      code('showTable(rows)', [out(tableBundle([wideRow(4), wideRow(8)], { caption: 'Every scheme, every column', source: 'here' }))]),
      code('display(roof)', [out(figureBundle(roof)), out(figureBundle(bars))]),
      code('showMarkdown(...)', [
        out({
          'text/markdown':
            'Measured $\\alpha = 0.62$, so $\\mathbb{E}[\\text{tokens}] = \\frac{1 - \\alpha^{\\gamma+1}}{1 - \\alpha} = 2.3$.',
          'text/plain': '',
        }),
      ]),
    ],
  };
}

describe('source labels (lib/viz)', () => {
  it('a chart or table marked with its source carries the label in its JSON, HTML and text; an unknown kind throws', () => {
    const fig = lineChart([{ name: 'a', x: [1], y: [1] }], {
      title: 't',
      source: ['here', { kind: 'h200', detail: 'data/bench/webgpu/core.json' }],
    });
    expect(figureSource(fig)).toEqual([{ kind: 'here' }, { kind: 'h200', detail: 'data/bench/webgpu/core.json' }]);
    const b = figureBundle(fig);
    expect(String(b['text/html'])).toContain('<div class="il-source" data-source="here h200"');
    expect(String(b['text/plain'])).toContain(
      'Source: measured on this machine; measured on an NVIDIA H200 (committed record): data/bench/webgpu/core.json',
    );
    expect((b['application/vnd.plotly.v1+json'] as { layout: { meta: unknown } }).layout.meta).toEqual({ source: figureSource(fig) });
    expect(figureSource(withSource(barChart(['x'], [{ name: 'n', values: [1] }]), 'modeled'))).toEqual([{ kind: 'modeled' }]);
    expect(figureSource(lineChart([{ name: 'a', x: [1], y: [1] }]))).toEqual([]);
    expect(String(figureBundle(lineChart([{ name: 'a', x: [1], y: [1] }]))['text/html'])).not.toContain('il-source');
    const t = tableBundle([{ a: 1 }], { source: 'modeled' });
    expect(String(t['text/html'])).toContain('Source: modeled');
    expect(String(t['text/plain'])).toContain('Source: modeled');
    expect(sourceLabel('here')).toBe('Source: measured on this machine');
    expect(() => lineChart([], { source: 'laptop' as never })).toThrow(/unknown figure source 'laptop'/);
  });
});

describe('site pieces', () => {
  it('titles: the number is split off once', () => {
    expect(splitTitle('3. KV-cache optimizations')).toEqual({ number: '3', name: 'KV-cache optimizations' });
    expect(splitTitle('Lesson 4: Speculative decoding')).toEqual({ number: '4', name: 'Speculative decoding' });
    expect(splitTitle('Putting it together')).toEqual({ number: '', name: 'Putting it together' });
  });

  it('a long cell folds to its key lines (bodies folded, calls kept); a short one stays whole; metadata can name the lines', () => {
    const nb = fixture();
    const src = String(nb.cells[2].source);
    const key = keyLines(src)!;
    expect(key).toContain('function helper(x: number): number {');
    expect(key).toContain('// ... 31 lines');
    expect(key).toContain('display(lineChart(');
    expect(key).not.toContain('const v7 =');
    expect(key.split('\n').length).toBeLessThan(12);
    expect(keyLines('const a = 1;\nconst b = 2;')).toBeNull();
    const named = keyLines(src, {
      inference_lab: {
        key_lines: [
          [1, 1],
          [src.split('\n').length, src.split('\n').length],
        ],
      },
    })!;
    expect(named.split('\n')).toEqual([
      'const rows = byMode(4, 10); // rounds',
      `// ... ${src.split('\n').length - 2} lines`,
      src.split('\n').at(-1),
    ]);
  });

  it("the index reads each lesson's first paragraph after its title and its key chart (tagged, else the first)", () => {
    const nb = fixture();
    expect(lessonBlurb(nb)).toMatch(/^Each decode step reads every weight once/);
    expect(keyChart(nb)?.layout.title).toMatchObject({ text: expect.stringContaining('Decode step time') });
    for (const f of listNotebooks()) {
      const l = readNotebook(f);
      expect(lessonBlurb(l).length, `${path.basename(f)}: first paragraph`).toBeGreaterThan(40);
    }
  });
});

describe.skipIf(noChromium !== null)('the rendered site in Chromium', () => {
  let browser: Browser;
  const site = path.join(ART, 'out');
  const lessons: Lesson[] = [];

  beforeAll(async () => {
    for (const f of listNotebooks()) {
      // an executed copy (build/lessons, from npm start) when there is one: its outputs are rendered too
      const executed = path.resolve('build', 'lessons', path.basename(f));
      const nb = readNotebook(fs.existsSync(executed) ? executed : f);
      const slug = path.basename(f, '.ipynb');
      lessons.push({ slug, title: lessonTitle(nb, slug), notebook: nb });
    }
    const fx = fixture();
    lessons.push({ slug: '07-fixture', title: lessonTitle(fx, 'fixture'), notebook: fx });
    fs.rmSync(site, { recursive: true, force: true });
    await renderSite(lessons, site, { machine: null, mode: 'test', date: 'now' });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
  });

  /** Open a page offline; collect network requests other than file://. */
  async function open(file: string, width: number): Promise<{ page: Page; network: string[]; errors: string[] }> {
    const page = await browser.newPage({ viewport: { width, height: 900 } });
    const network: string[] = [];
    const errors: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith('file://') && !r.url().startsWith('data:')) network.push(r.url());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(`file://${file}`);
    await page
      .waitForFunction(() => Array.from(document.querySelectorAll('.il-plot')).every((d) => d.querySelector('.main-svg')), null, {
        timeout: 30_000,
      })
      .catch(() => undefined);
    await page.evaluate(() => document.fonts.ready);
    return { page, network, errors };
  }

  /** Everything the test checks, measured in the page. */
  const measure = (page: Page) =>
    page.evaluate(() => {
      const main = document.querySelector('main')!;
      const cs = getComputedStyle(main);
      const mr = main.getBoundingClientRect();
      const col = { left: mr.left + parseFloat(cs.paddingLeft), right: mr.right - parseFloat(cs.paddingRight) };
      const box = (e: Element) => e.getBoundingClientRect();
      const wider = (sel: string) =>
        Array.from(main.querySelectorAll(sel))
          .map((e) => ({ sel, html: e.outerHTML.slice(0, 80), left: box(e).left, right: box(e).right }))
          .filter((b) => b.right > col.right + 1 || b.left < col.left - 1);
      // prose text outside code, KaTeX and chart SVG: where raw TeX would show
      const clone = main.cloneNode(true) as HTMLElement;
      clone.querySelectorAll('pre, code, .katex, .il-plot, script').forEach((e) => e.remove());
      const prose = clone.textContent ?? '';
      // chart labels: title, axis titles, legend, annotations, point labels; pairwise overlaps
      const overlaps: string[] = [];
      const outside: string[] = [];
      for (const plot of Array.from(main.querySelectorAll('.il-plot'))) {
        const svg = plot.querySelector('.main-svg');
        if (!svg) continue;
        const sb = svg.getBoundingClientRect();
        const labels = Array.from(plot.querySelectorAll('.gtitle, .g-xtitle, .g-ytitle, .legend, .annotation, .textpoint text'))
          .map((e) => ({ name: `${e.getAttribute('class')}:${(e.textContent ?? '').slice(0, 30)}`, b: e.getBoundingClientRect() }))
          .filter((l) => l.b.width > 0 && l.b.height > 0);
        for (const l of labels)
          if (l.b.left < sb.left - 1 || l.b.right > sb.right + 1 || l.b.top < sb.top - 1 || l.b.bottom > sb.bottom + 1)
            outside.push(l.name);
        for (let i = 0; i < labels.length; i++)
          for (let j = i + 1; j < labels.length; j++) {
            const a = labels[i].b;
            const b = labels[j].b;
            const ox = Math.min(a.right, b.right) - Math.max(a.left, b.left);
            const oy = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
            if (ox > 1 && oy > 1) overlaps.push(`${labels[i].name} / ${labels[j].name}`);
          }
      }
      return {
        column: col,
        pageScrolls: document.documentElement.scrollWidth > document.documentElement.clientWidth,
        tooWide: [
          ...wider('.table-wrap'),
          ...wider('.il-plot'),
          ...wider('.main-svg'),
          ...wider('.katex-display'),
          ...wider('pre'),
          ...wider('.outputs'),
          ...wider('img'),
        ],
        unwrappedTables: Array.from(main.querySelectorAll('table')).filter((t) => !t.parentElement?.classList.contains('table-wrap'))
          .length,
        rawDollar: prose.match(/.{0,30}\$.{0,30}/g) ?? [],
        rawTex: prose.match(/.{0,30}\\(frac|sum|text|cdot|approx|alpha|min)\b.{0,30}/g) ?? [],
        katex: main.querySelectorAll('.katex').length,
        katexErrors: main.querySelectorAll('.katex-error').length,
        plots: main.querySelectorAll('.il-plot').length,
        drawn: Array.from(main.querySelectorAll('.il-plot')).filter((p) => p.querySelector('.main-svg')).length,
        unlabelled: Array.from(main.querySelectorAll('.il-plot')).filter((p) => !p.nextElementSibling?.classList.contains('il-source'))
          .length,
        sources: Array.from(main.querySelectorAll('.il-source')).map((e) => e.textContent),
        folds: main.querySelectorAll('.code-fold details').length,
        overlaps,
        outside,
        fontsOk: document.fonts.check('16px KaTeX_Main'),
      };
    });

  for (const width of [1280, 900]) {
    it(`at ${width} px: math rendered, nothing wider than the column, chart labels apart, offline`, async () => {
      for (const l of lessons) {
        const { page, network, errors } = await open(path.join(site, `${l.slug}.html`), width);
        const m = await measure(page);
        if (width === 1280) await page.screenshot({ path: path.join(ART, `${l.slug}.png`), fullPage: true });
        await page.close();
        const where = `${l.slug} at ${width} px`;
        expect(m.rawDollar, `${where}: raw $ in the prose`).toEqual([]);
        expect(m.rawTex, `${where}: raw TeX in the prose`).toEqual([]);
        expect(m.katexErrors, `${where}: KaTeX errors`).toBe(0);
        expect(m.tooWide, `${where}: wider than the content column ${JSON.stringify(m.column)}`).toEqual([]);
        expect(m.pageScrolls, `${where}: the page scrolls sideways`).toBe(false);
        expect(m.unwrappedTables, `${where}: tables outside a scrolling wrapper`).toBe(0);
        expect(m.drawn, `${where}: charts drawn`).toBe(m.plots);
        expect(m.overlaps, `${where}: chart labels overlapping`).toEqual([]);
        expect(m.outside, `${where}: chart labels outside the chart`).toEqual([]);
        expect(network, `${where}: network requests`).toEqual([]);
        expect(errors, `${where}: console errors`).toEqual([]);
        if (l.slug === '07-fixture') {
          expect(m.katex).toBeGreaterThanOrEqual(5);
          expect(m.plots).toBe(3);
          expect(m.unlabelled, 'every chart has a source label').toBe(0);
          expect(m.sources).toContain('Source: measured on an NVIDIA H200 (committed record)');
          expect(m.sources.some((s) => s?.startsWith('Source: measured on this machine; measured on an NVIDIA H200'))).toBe(true);
          expect(m.folds).toBe(1);
          expect(m.fontsOk, 'KaTeX fonts load from the site').toBe(true);
        }
      }
    }, 240_000);
  }

  it('the index: titles numbered once, what "the tutorial" is, a blurb and the key chart per lesson', async () => {
    const { page, network } = await open(path.join(site, 'index.html'), 1280);
    const m = await page.evaluate(() => ({
      toc: Array.from(document.querySelectorAll('nav.toc li')).map((li) => li.textContent?.trim() ?? ''),
      cards: Array.from(document.querySelectorAll('.lesson-card')).map((c) => ({
        title: c.querySelector('h2')?.textContent?.trim(),
        blurb: c.querySelector('.blurb')?.textContent?.trim() ?? '',
        chart: !!c.querySelector('.il-plot .main-svg'),
      })),
      tutorial: document.querySelector('.tutorial')?.textContent ?? '',
      listStyle: getComputedStyle(document.querySelector('nav.toc ol')!).listStyleType,
    }));
    await page.close();
    expect(network).toEqual([]);
    expect(m.listStyle).toBe('none');
    expect(m.toc[0]).toMatch(/^1\s+Why inference is slow$/);
    for (const t of m.toc) expect(t, 'a number shown once').not.toMatch(/^\d+\s+\d+\./);
    expect(m.cards.length).toBe(lessons.length);
    for (const c of m.cards) expect(c.blurb.length, `${c.title}: blurb`).toBeGreaterThan(40);
    expect(m.cards.at(-1)).toMatchObject({ title: '7 Fixture lesson', chart: true });
    expect(m.tutorial).toContain('the tutorial');
    expect(m.tutorial).toContain('PyTorch');
  }, 60_000);
});
