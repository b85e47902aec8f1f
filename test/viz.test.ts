// Charts: a figure's output carries no copy of plotly.js and draws wherever plotly.min.js is
// reachable (beside the page here; beside the notebook in Jupyter: test/notebook.live.test.ts);
// titles clear plotly's toolbar, legends clear the x-axis title, hover labels keep whole names;
// the committed lessons are small, have cell ids and no plotly.js inside.

import * as fs from 'node:fs';
import * as path from 'node:path';

import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { barChart, copyPlotlyJs, display, figureBundle, figureHtml, lineChart, placeLabels, rooflineChart, setDisplaySink, timelineChart, type Figure, type MimeBundle, type Roofs } from '../lib';
import { listNotebooks } from '../scripts/lessons/main';

const REQUIRE = process.env.INFERENCE_LAB_REQUIRE_LESSONS === '1';
const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ART = path.resolve('test-artifacts', 'viz');
const MAX_NOTEBOOK_BYTES = 500 * 1024;
/** a line of plotly.js's licence header: present wherever a copy of plotly.js is */
const PLOTLY_MARK = 'Copyright 2012-';

const noChromium = fs.existsSync(CHROMIUM) ? null : `${CHROMIUM} not found (apt-get install chromium)`;
if (noChromium && REQUIRE) throw new Error(`INFERENCE_LAB_REQUIRE_LESSONS=1 but the browser tests cannot run: ${noChromium}`);

const longNames = lineChart(
  [
    { name: 'target (15.7M) measured decode', x: [1, 2, 3], y: [3, 4, 5] },
    { name: 'random-125m (SmolLM2-135M shapes)', x: [1, 2, 3], y: [2, 3, 1] },
    { name: 'Llama-3-8B shapes, float32', x: [1, 2, 3], y: [1, 2, 2] },
    { name: 'another fairly long trace name', x: [1, 2, 3], y: [1.5, 2.5, 2] },
  ],
  { title: "This machine's roofline: decode sits on the bandwidth slope, prefill climbs to the compute roof", x: { title: 'tokens of context' }, y: { title: 'MiB' } },
);
const figures: Figure[] = [
  longNames,
  barChart(['repetitive', 'free text'], [{ name: 'prompt lookup, gamma 4', values: [1, 2] }, { name: 'draft model, gamma 3', values: [2, 1] }], { title: 'Speedup', x: { title: 'prompt' } }),
  timelineChart([{ lane: 'r0', start: 0, end: 3, kind: 'decode' }, { lane: 'r1', start: 1, end: 2, kind: 'prefill chunk' }], { title: 'Continuous batching' }),
];

describe('chart bundles', () => {
  it('one bundle: plotly JSON, HTML with an on-demand loader and no plotly.js, text; the same for every chart', () => {
    const got: MimeBundle[] = [];
    setDisplaySink((b) => got.push(b));
    try {
      display(figures[0]);
      display(figures[1]);
    } finally {
      setDisplaySink(null);
    }
    for (const b of got) {
      expect(Object.keys(b).sort()).toEqual(['application/vnd.plotly.v1+json', 'text/html', 'text/plain']);
      const html = String(b['text/html']);
      expect(html).not.toContain(PLOTLY_MARK);
      expect(html).not.toContain('data-il-plotly-lib');
      expect(html).toContain('ilPlotly(');
      expect(html.length).toBeLessThan(12_000);
    }
    expect(got[0]['text/plain']).toContain('[plot] This machine');
  });

  it('layouts: hover labels keep whole trace names; the title sits below the toolbar strip; room for the legend', () => {
    for (const f of figures) {
      expect((f.layout.hoverlabel as { namelength: number }).namelength).toBe(-1);
      const title = f.layout.title as { yref: string; pad: { t: number } };
      expect(title.yref).toBe('container');
      expect(title.pad.t).toBeGreaterThanOrEqual(32);
    }
    expect((longNames.layout.margin as { b: number }).b).toBeGreaterThan(100); // two legend rows
  });

  it('point labels that would land on each other or on an annotation are left to hover', () => {
    const range = { x: [0.01, 1000] as [number, number], y: [0.1, 30] as [number, number] };
    const items = [
      { key: 'a', label: 'target decode (predicted)', x: 0.5, y: 5 },
      { key: 'b', label: 'random-125m decode (predicted)', x: 0.5, y: 5 }, // same point as a
      { key: 'c', label: 'target decode (measured)', x: 0.5, y: 2.4 }, // below a, clear of it
      { key: 'd', label: 'prefill T=256', x: 100, y: 15 }, // on the compute-bound annotation
    ];
    expect(placeLabels(items, range, [{ label: 'compute-bound', x: 300, y: 15.5, anchor: 'right' }])).toEqual(['a', 'c']);
    const fig = rooflineChart({ bandwidthGBps: 10, peakGflops: 15.5 } as Roofs, [
      { name: 'one', intensity: 0.5, gflops: 5 },
      { name: 'two', intensity: 0.5, gflops: 5 },
    ]);
    const points = fig.data[1];
    expect(points.text).toEqual(['one', '']);
    expect(points.customdata).toEqual(['one', 'two']); // hover keeps both names
  });

  it('a title cannot close the inline script', () => {
    const evil = figureBundle(lineChart([{ name: '</script><script>x()</script>', x: [1], y: [1] }]));
    expect(String(evil['text/html'])).not.toContain('</script><script>x()');
  });
});

describe('committed lessons', () => {
  it('each is under 500 KB, nbformat 4.5 with an id on every cell, with no copy of plotly.js', () => {
    const files = listNotebooks();
    expect(files.length).toBeGreaterThanOrEqual(6);
    for (const f of files) {
      const raw = fs.readFileSync(f, 'utf8');
      const name = path.basename(f);
      expect(raw.length, `${name}: size`).toBeLessThan(MAX_NOTEBOOK_BYTES);
      expect(raw, `${name}: plotly.js inside`).not.toContain(PLOTLY_MARK);
      const nb = JSON.parse(raw) as { nbformat: number; nbformat_minor: number; cells: { id?: string }[] };
      expect([nb.nbformat, nb.nbformat_minor], name).toEqual([4, 5]);
      const ids = nb.cells.map((c) => c.id);
      for (const id of ids) expect(id, `${name}: cell id`).toMatch(/^[a-zA-Z0-9-_]{1,64}$/);
      expect(new Set(ids).size, `${name}: unique ids`).toBe(ids.length);
    }
  });
});

describe.skipIf(noChromium !== null)('charts in a browser', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** Write a page of chart outputs into `dir`, open it offline; return what drew and what was logged. */
  async function open(dir: string, withPlotly: boolean) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    if (withPlotly) expect(copyPlotlyJs(dir)).not.toBeNull();
    const body = figures.map((f, i) => figureHtml(f, { id: `p${i}` })).join('\n');
    fs.writeFileSync(path.join(dir, 'page.html'), `<!doctype html><html><head><meta charset="utf-8"></head><body style="width:900px;margin:0">${body}</body></html>`);
    const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    const errors: string[] = [];
    const network: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => !r.url().startsWith('file://') && network.push(r.url()));
    await page.goto(`file://${path.join(dir, 'page.html')}`);
    return { page, errors, network };
  }

  it('draws every chart from plotly.min.js beside the page, offline, once per page; title, toolbar and legend do not collide', async () => {
    const { page, errors, network } = await open(path.join(ART, 'beside'), true);
    try {
      await page.waitForFunction((n) => document.querySelectorAll('.il-plot svg.main-svg').length >= n, figures.length, { timeout: 60_000 });
      expect(await page.locator('script[src$="plotly.min.js"]').count()).toBe(1);
      await page.hover('#p0 .nsewdrag'); // shows the toolbar
      const boxes = await page.evaluate(() =>
        Array.from(document.querySelectorAll('.il-plot')).map((d) => {
          const box = (s: string) => {
            const e = d.querySelector(s);
            if (!e) return null;
            const r = e.getBoundingClientRect();
            return { left: r.left, top: r.top, right: r.right, bottom: r.bottom };
          };
          return { title: box('.gtitle'), modebar: box('.modebar'), legend: box('.legend'), xtitle: box('.xtitle') };
        }),
      );
      type Box = { left: number; top: number; right: number; bottom: number } | null;
      const overlap = (a: Box, b: Box) => a !== null && b !== null && a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
      for (const [i, b] of boxes.entries()) {
        expect(b.title, `chart ${i}: title`).not.toBeNull();
        expect(overlap(b.title, b.modebar), `chart ${i}: title under the toolbar`).toBe(false);
        expect(overlap(b.legend, b.xtitle), `chart ${i}: legend on the x-axis title`).toBe(false);
      }
      expect(boxes[0].modebar, 'toolbar shown on hover').not.toBeNull();
      expect(errors).toEqual([]);
      expect(network).toEqual([]);
      fs.mkdirSync(ART, { recursive: true });
      await page.screenshot({ path: path.join(ART, 'charts.png'), fullPage: true });
    } finally {
      await page.close();
    }
  }, 120_000);

  it('without plotly.min.js each chart says where it looked, and no script error', async () => {
    const { page, errors } = await open(path.join(ART, 'missing'), false);
    try {
      await page.waitForFunction((n) => Array.from(document.querySelectorAll('.il-plot')).filter((d) => /plotly\.js was not found/.test(d.textContent ?? '')).length >= n, figures.length, { timeout: 30_000 });
      expect(await page.locator('.il-plot').first().textContent()).toContain('looked for plotly.min.js at: plotly.min.js');
      // the browser reports the missing file itself; nothing else may be logged
      expect(errors.filter((e) => !/ERR_FILE_NOT_FOUND|Failed to load resource/.test(e))).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);
});
