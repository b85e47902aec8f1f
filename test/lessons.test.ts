// The lessons: every notebook executes through Jupyter + tslab with no cell error (no
// --allow-errors) and shows its key outputs; the rendered site opens in Chromium with charts drawn,
// no console errors and no network; generated text with <script> renders as text.
// Without Jupyter or Chromium the suites skip with the reason, unless
// INFERENCE_LAB_REQUIRE_LESSONS=1 (CI), where they must run.

import * as fs from 'node:fs';
import * as path from 'node:path';

import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { figureBundle, generatedBundle, lineChart, seedClaim, seedClaims, setDisplaySink, tableBundle, display, type MimeBundle } from '../lib';
import { executeNotebook, type ExecResult } from '../scripts/lessons/execute';
import { listNotebooks } from '../scripts/lessons/main';
import { readNotebook, renderSite, type Lesson, type Notebook } from '../scripts/lessons/render';
import { findPython, setupJupyter } from '../scripts/lessons/setup';
import { checkSavedNotebook, MAX_NOTEBOOK_BYTES } from './charts.helpers';

const REQUIRE = process.env.INFERENCE_LAB_REQUIRE_LESSONS === '1';
const ART = path.resolve('test-artifacts', 'lessons');
const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function why(check: () => unknown): string | null {
  try {
    check();
    return null;
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
}
const noJupyter = why(() => findPython());
const noChromium = fs.existsSync(CHROMIUM) ? null : `${CHROMIUM} not found (apt-get install chromium)`;
for (const [what, reason] of [['notebook', noJupyter], ['browser', noChromium]] as const) {
  if (reason && REQUIRE) throw new Error(`INFERENCE_LAB_REQUIRE_LESSONS=1 but the ${what} tests cannot run: ${reason}`);
  if (reason) console.warn(`[lessons.test] skipping ${what} tests: ${reason}`);
}

/** Open each page; return per page: console errors, non-file requests, plots drawn / expected. */
async function visit(browser: Browser, files: string[], shots: string | null) {
  const results: { file: string; errors: string[]; network: string[]; drawn: number; expected: number; text: string; pwned: unknown }[] = [];
  for (const file of files) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    const network: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => !r.url().startsWith('file://') && !r.url().startsWith('data:') && network.push(r.url()));
    await page.goto(`file://${file}`, { waitUntil: 'load' });
    const expected = await page.locator('.il-plot').count();
    if (expected > 0) await page.waitForFunction((n) => document.querySelectorAll('.il-plot svg.main-svg').length >= n, expected, { timeout: 30_000 }).catch(() => undefined);
    const drawn = await page.evaluate(() => Array.from(document.querySelectorAll('.il-plot')).filter((d) => d.querySelector('svg.main-svg')).length);
    const text = await page.evaluate(() => document.body.innerText);
    const pwned = await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned);
    if (shots) await page.screenshot({ path: path.join(shots, `${path.basename(file, '.html')}.png`), fullPage: true });
    results.push({ file, errors, network, drawn, expected, text, pwned });
    await page.close();
  }
  return results;
}

describe('lib/viz display bundles', () => {
  it('a figure is one bundle with plotly JSON, HTML and text; no copy of plotly.js (test/viz.test.ts: where it loads from)', () => {
    const got: MimeBundle[] = [];
    setDisplaySink((b) => got.push(b));
    try {
      display(lineChart([{ name: 'a', x: [1, 2], y: [3, 4] }], { title: 't' }));
      display(lineChart([{ name: 'b', x: [1, 2], y: [3, 4] }]));
    } finally {
      setDisplaySink(null);
    }
    expect(Object.keys(got[0]).sort()).toEqual(['application/vnd.plotly.v1+json', 'text/html', 'text/plain']);
    for (const b of got) expect(String(b['text/html'])).not.toContain('data-il-plotly-lib');
    expect(got[0]['text/plain']).toContain('[plot] t');
    // a title cannot close the inline script
    const evil = figureBundle(lineChart([{ name: '</script><script>x()</script>', x: [1], y: [1] }]));
    expect(String(evil['text/html'])).not.toContain('</script><script>x()');
  });

  it('tables and generated text escape their content', () => {
    expect(String(tableBundle([{ a: '<b>x</b>' }])['text/html'])).toContain('&lt;b&gt;x&lt;/b&gt;');
    expect(String(generatedBundle('<script>alert(1)</script>')['text/html'])).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
  });
});

describe.skipIf(noChromium !== null)('generated text in the rendered site', () => {
  it('a <script> in model output renders as text, in every kind of output', async () => {
    const evil = '<script>window.__pwned=1</script>';
    const nb: Notebook = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: {},
      cells: [
        { cell_type: 'markdown', source: '# Escaping' },
        {
          cell_type: 'code',
          source: 'showGenerated(text)',
          outputs: [
            { output_type: 'stream', name: 'stdout', text: `stream: ${evil}\n` },
            { output_type: 'display_data', data: generatedBundle(`generated: ${evil}`) },
            { output_type: 'display_data', data: { 'text/markdown': `markdown: ${evil}`, 'text/plain': evil } },
            { output_type: 'display_data', data: { 'text/plain': `plain: ${evil}` } },
            { output_type: 'display_data', data: tableBundle([{ text: `table: ${evil}` }]) },
          ],
        },
      ],
    };
    const out = path.join(ART, 'escape-site');
    fs.rmSync(out, { recursive: true, force: true });
    await renderSite([{ slug: 'escape', title: 'Escaping', notebook: nb }], out, { machine: null, mode: 'test', date: 'now' });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    try {
      const [r] = await visit(browser, [path.join(out, 'escape.html')], null);
      expect(r.pwned).toBeUndefined();
      for (const kind of ['stream', 'generated', 'markdown', 'plain', 'table']) expect(r.text).toContain(`${kind}: ${evil}`);
      expect(r.errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});

describe.skipIf(noJupyter !== null)('lesson notebooks', () => {
  const build = path.join(ART, 'build');
  const site = path.join(ART, 'site');
  const runs: ExecResult[] = [];
  const lessons: Lesson[] = [];

  beforeAll(async () => {
    const { python, env } = setupJupyter(() => undefined);
    fs.rmSync(build, { recursive: true, force: true });
    for (const nb of listNotebooks()) {
      const r = await executeNotebook(nb, build, { python, env: { ...env, LESSONS_MODE: 'QUICK' } });
      console.log(`[lessons.test] ${path.basename(nb)}: ${r.ok ? 'ok' : 'FAILED'} in ${r.seconds.toFixed(0)} s`);
      runs.push(r);
      if (r.ok) lessons.push({ slug: path.basename(nb, '.ipynb'), title: path.basename(nb), notebook: readNotebook(r.executed), seconds: r.seconds });
    }
    fs.rmSync(site, { recursive: true, force: true });
    await renderSite(lessons, site, { machine: null, mode: 'QUICK', date: 'test' });
  }, 1_200_000);

  it('every notebook runs top to bottom with no cell error', () => {
    expect(runs.length).toBeGreaterThanOrEqual(2);
    for (const r of runs) expect(r.ok, `${path.basename(r.notebook)}:\n${r.error}`).toBe(true);
    for (const l of lessons) {
      for (const c of l.notebook.cells) for (const o of c.outputs ?? []) expect(o.output_type, `${l.slug}: error output`).not.toBe('error');
    }
  });

  const outputsText = (slug: string) => {
    const l = lessons.find((x) => x.slug.startsWith(slug));
    if (!l) throw new Error(`lesson ${slug} did not run`);
    return JSON.stringify(l.notebook.cells.map((c) => c.outputs ?? []));
  };

  it('lesson 1 measures bandwidth, predicts and measures decode, and draws the roofline', () => {
    const t = outputsText('01');
    expect(t).toContain('memory bandwidth W (GEMV)');
    expect(t).toContain('predicted tok/s');
    expect(t).toContain('measured tok/s');
    expect(t).toContain('random-125m');
    expect(t).toContain('application/vnd.plotly.v1+json');
    expect(t).toMatch(/roof: [0-9.]+ GB\/s/);
    expect(t).toContain('One forward pass of T tokens');
    // three regimes, measured here beside the H200 record; the CPU's low ridge stated
    expect(t).toContain('Double the batch: does the decode step time change?');
    for (const regime of ['compute-bound', 'bandwidth-bound', 'overhead-bound']) expect(t).toContain(regime);
    expect(t).toContain('ops x cost per op');
    expect(t).toMatch(/This CPU's ridge is low: [0-9.]+ FLOP\/byte/);
    expect(t).toContain('Source: measured on this machine');
    expect(t).toContain('Source: measured on this machine; measured on an NVIDIA H200 (committed record): data/bench/webgpu/core-webgpu.json');
    expect(t).toContain(seedClaim('latency-formula').text);
    expect(t).toContain(seedClaims().source.title);
    expect(t).not.toContain("${''}");
  });

  it('lesson 2 checks the tutorial cache against the library and measures naive vs cached', () => {
    const t = outputsText('02');
    expect(t).toContain('tutorial cache (concat)');
    expect(t).not.toMatch(/same tokens[^"]*NO/);
    expect(t).toContain('same tokens: yes');
    expect(t).toContain('naive ms');
    expect(t).toContain('Time to produce the next token at context length n');
    expect(t).toContain(seedClaim('7b-kv-2048').text);
    expect(t).toContain("The tutorial's 7B example, computed with llamaSizes");
    expect(t).not.toContain('32 by default');
    // eager vs captured: kernels per step counted here, the H200 records read from data/ (numbers only from the JSON)
    const md = JSON.stringify(lessons.find((x) => x.slug.startsWith('02'))!.notebook.cells.filter((c) => c.cell_type === 'markdown').map((c) => c.source));
    expect(md).toContain('## Eager vs captured: one step as ~370 tfjs ops vs one command buffer');
    expect(t).toMatch(/launches \*\*[0-9]+ kernels\*\* on this backend/);
    expect(t).toContain('5 x L + 3 = 5 x 8 + 3');
    expect(t).toContain('One decode step of target on an H200: eager vs captured');
    expect(t).toContain('Source: measured on an NVIDIA H200 (committed record): data/bench/webgpu/captured-webgpu.json');
    expect(t).toContain('Source: measured on an NVIDIA H200 (committed record): data/bench/webgpu/peers-webgpu.json');
    expect(t).toContain('HF transformers, compiled (fp32)');
    expect(t).toContain('nearly flat in batch');
    expect(t).toContain('(the 5L + 3 above)');
    expect(t).toMatch(/agreed with Hugging Face's on \*\*[0-9]+\/[0-9]+\*\*/);
  });

  it('lesson 3 checks the from-scratch quantizer against the library, measures bytes and quality per scheme, budgets and paged waste', () => {
    const t = outputsText('03');
    expect(t).toContain('codes differing from scratch: 0; max |lib - scratch| after dequantize: 0');
    expect(t).toContain('give identical codes and values');
    expect(t).toContain('held (tf.memory, bytes)');
    expect(t).toContain('int4-tensor');
    expect(t).toContain('int4-kivi-t64-r32');
    expect(t).toContain('greedy agreement');
    expect(t).toContain('KL (nats)');
    expect(t).toContain('Entropy-proportional budgets');
    expect(t).toContain('Perplexity vs KV memory at the end of a 1024-token window');
    // eviction scored where it evicted, with the positions counted, beside quantization at a similar memory share; summary from the run
    expect(t).toContain('positions scored (evicted)');
    expect(t).toContain('ppl rise where evicted');
    expect(t).toMatch(/raised perplexity by \*\*-?[0-9.]+%\*\* against the full cache at the same positions/);
    expect(t).toContain('Eviction vs quantization at a similar share of memory');
    expect(t).toContain('Next-token KL vs share of the float32 KV memory held: eviction (where it evicted) vs quantization');
    expect(t).toContain('Eviction, scored where it evicted, against quantization at a similar share of memory');
    expect(t).not.toContain('evicting costs more perplexity per byte than quantizing');
    expect(t).toMatch(/entropy-based budgets gave a lower perplexity than uniform budgets in \*\*[0-9]+ of [0-9]+\*\*/);
    expect(t).toContain('live-token share');
    expect(t).toContain('paged, blocks of 16');
    expect(t).toContain('Tensors still held: 0.');
    expect(t).toContain('application/vnd.plotly.v1+json');
  });

  it('lesson 4 checks the accept rule, traces real steps, measures alpha, the verify cost, the gamma sweep and the distribution', () => {
    const t = outputsText('04');
    expect(t).toContain('library and from-scratch verdicts differed in 0 trials');
    expect(t).toContain('Same tokens as plain greedy `generate()` with the target alone: **yes**');
    expect(t).toMatch(/α = [0-9.]+/);
    expect(t).toContain('Acceptance per drafted position');
    expect(t).toContain('The verify pass: one forward over T = gamma + 1 tokens');
    expect(t).toContain('measured speedup');
    expect(t).toContain('prediction with v');
    expect(t).toContain('prompt lookup, gamma 4');
    expect(t).toContain('consistent with p');
    expect(t).toContain('rejected: not p');
    expect(t).toContain('application/vnd.plotly.v1+json');
    // where it wins: the H200 records and the modeled deployment, labelled
    expect(t).toContain('measured on an NVIDIA H200 (committed record): data/bench/webgpu/spec-webgpu.json (nvidia nvidia-h200, commit ');
    expect(t).toContain('measured on an NVIDIA H200 (committed record): data/bench/webgpu/spec-engine-webgpu.json (nvidia nvidia-h200, commit ');
    expect(t).toContain('captured path inside the engine');
    expect(t).toMatch(/\*\*Measured on the H200, captured path\*\*.*the best batch-1 run was \*\*[0-9.]+x\*\*/);
    expect(t).toContain('Source: modeled');
    expect(t).toContain('**Model assumptions**');
    expect(t).toContain(seedClaim('spec-2-3x').text);
    expect(t).not.toContain('ridge in the hundreds of FLOP/byte (lesson 1)');
  });

  it('lesson 5 compares static and continuous batching and shows timelines, block tables, prefix caching, preemption and memory', () => {
    const t = outputsText('05');
    expect(t).toContain('One decode step of B sequences');
    expect(t).toContain('same tokens from both schedulers: yes');
    expect(t).toContain('wall clock: tok/s');
    expect(t).toContain('GPU-like pricing: tok/s');
    expect(t).toContain('Continuous batching: a seat is refilled');
    expect(t).toContain('logical 0');
    expect(t).toContain('all hold');
    expect(t).toContain('hit rate (prompt tokens from cache)');
    expect(t).toContain('same tokens either way: yes');
    expect(t).toMatch(/preempted \*\*[1-9][0-9]*\*\* times/);
    expect(t).toContain('paged, blocks of 16');
    expect(t).not.toContain('same tokens: NO');
    // where it wins: the H200 record and a modeled Poisson steady state, labelled
    expect(t).toContain('measured on an NVIDIA H200 (committed record): data/bench/webgpu/serve-webgpu.json (nvidia nvidia-h200, commit ');
    expect(t).toContain('steady-state tok/s (measured)');
    expect(t).toMatch(/\*\*Measured on the H200, Poisson steady state\*\*.*for \*\*[0-9.]+x\*\* the steady-state throughput/);
    expect(t).toContain('shuffled / contiguous');
    expect(t).toContain('**What paging costs** on the H200');
    expect(t).toContain('**Why the CPU number differs.**');
    expect(t).toContain('steady-state decode tok/s (modeled)');
    expect(t).toContain('Source: modeled');
    expect(t).toContain(seedClaim('cb-2-10x').text);
    expect(t).toContain('vLLM V1');
    expect(t).not.toContain('same tokens from both schedulers: NO');
    // build it yourself: the from-scratch allocator and scheduler equal lib/engine step by step, preemptions included
    expect(t).toMatch(/From scratch = `lib\/engine`: identical for all [1-9][0-9]* steps/);
    expect(t).toMatch(/the same \*\*[1-9][0-9]* preemptions\*\*/);
    expect(t).toContain('Step 0: r0+');
    expect(t).toContain('blocks free)');
  });

  it('lesson 6 shows the LLM API and re-makes the Part 6 table from measurements, claims beside them', () => {
    const t = outputsText('06');
    expect(t).toContain('Part 6 re-made on');
    for (const row of ['naive (no cache)', 'KV cache', 'paging + continuous batching', 'speculative decoding (draft, γ = 4)', 'int8 KV cache']) expect(t).toContain(row);
    expect(t).toContain('ours: tokens/s');
    expect(t).toContain('claimed (quoted, not measured)');
    expect(t).toContain('One decode step of B sequences');
    expect(t).toMatch(/\*\*KV cache: [0-9.]+x\*\* over naive recomputation, with identical tokens/);
    // our H200 rows (measured, labelled with machine and commit) beside the tutorial's Part 6 rows (quoted, labelled as claims)
    expect(t).toContain('Source: measured on an NVIDIA H200 (committed record): data/bench/webgpu/peers-webgpu.json (nvidia nvidia-h200, commit ');
    for (const row of ['ours: eager tfjs ops (fp32)', 'ours: captured WebGPU step (fp32)', 'ours: captured WebGPU step (bf16 weights)', 'HF transformers, eager (fp32)', 'HF transformers, torch.compile (fp32)'])
      expect(t).toContain(row);
    for (const id of ['table-naive', 'table-hf-cache', 'table-vllm', 'table-trtllm']) expect(t).toContain(seedClaim(id).text);
    expect(t).toContain("the tutorial's claim (quoted, not measured)");
    expect(t).toContain('measured on the H200: data/bench/webgpu/peers-webgpu.json');
    expect(t).toContain('**Why the CPU figures differ.**');
    expect(t).toContain('data/bench/webgpu/captured-webgpu.json');
    expect(t).toMatch(/\*\*Measured on this CPU\*\* \([a-z]+\): the KV cache (gained|broke even|lost)/);
    expect(t).toContain('Tensors still held: 0.');
    expect(t).toContain('application/vnd.plotly.v1+json');
  });

  it.skipIf(noChromium !== null)('every rendered lesson draws its charts, logs no error and makes no network request', async () => {
    const shots = path.resolve('test-artifacts', 'screenshots');
    fs.mkdirSync(shots, { recursive: true });
    const pages = [path.join(site, 'index.html'), ...lessons.map((l) => path.join(site, `${l.slug}.html`))];
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    try {
      for (const r of await visit(browser, pages, shots)) {
        const name = path.basename(r.file);
        expect(r.errors, `${name}: console errors`).toEqual([]);
        expect(r.network, `${name}: network requests`).toEqual([]);
        expect(r.drawn, `${name}: plots drawn`).toBe(r.expected);
        if (name !== 'index.html') expect(r.expected, `${name}: has charts`).toBeGreaterThan(0);
      }
    } finally {
      await browser.close();
    }
  }, 180_000);

  it.skipIf(noChromium !== null)('each executed notebook is under 500 KB with no copy of plotly.js, and draws offline in nbconvert HTML and on the site', async () => {
    expect(fs.existsSync(path.join(build, 'plotly.min.js')), 'plotly.min.js beside the executed notebooks').toBe(true);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    try {
      for (const r of runs.filter((x) => x.ok)) {
        const name = path.basename(r.executed);
        const c = await checkSavedNotebook(browser, findPython(), r.executed, path.join(ART, 'nbconvert-site'));
        expect(c.bytes, `${name}: size`).toBeLessThan(MAX_NOTEBOOK_BYTES);
        expect(c.hasPlotlyCopy, `${name}: a copy of plotly.js inside`).toBe(false);
        for (const p of c.pages) {
          expect(p.drawn, `${name}, ${p.page}: charts drawn: ${p.text.join(' | ')}`).toBe(c.charts);
          expect(p.errors, `${name}, ${p.page}: errors`).toEqual([]);
        }
      }
    } finally {
      await browser.close();
    }
  }, 300_000);

  afterAll(() => undefined);
});
