// A lesson in the live classic Notebook, as a learner uses it: `npm run notebook`'s script starts
// the server, Chromium opens lesson 1 (QUICK mode: two charts, the fastest lesson), runs all cells
// and saves; reloads the page (saved charts must draw); then clears the outputs, reloads again (a
// page with no plotly.js on it) and re-runs a chart cell in the same kernel, which must draw
// although that kernel drew charts before (the failure the issue reported). No console error may
// come from our code. The saved notebook must be under 500 KB with no copy of plotly.js, and its
// charts must draw offline in nbconvert's HTML and on our site. Without Jupyter or Chromium it
// skips with the reason, unless INFERENCE_LAB_REQUIRE_LESSONS=1 (CI).

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { findAddress } from '../scripts/lessons/notebook';
import { findPython } from '../scripts/lessons/setup';
import { charts, checkSavedNotebook, MAX_NOTEBOOK_BYTES, OURS, waitDrawn } from './charts.helpers';

const REQUIRE = process.env.INFERENCE_LAB_REQUIRE_LESSONS === '1';
const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const LESSON = '01-why-inference-is-slow.ipynb';
const DIR = path.resolve('test-artifacts', 'live'); // under the repo: the lesson resolves `inference-lab` from here

function why(check: () => unknown): string | null {
  try {
    check();
    return null;
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
}
const skip = why(() => findPython()) ?? (fs.existsSync(CHROMIUM) ? null : `${CHROMIUM} not found (apt-get install chromium)`);
if (skip && REQUIRE) throw new Error(`INFERENCE_LAB_REQUIRE_LESSONS=1 but the live notebook test cannot run: ${skip}`);
if (skip) console.warn(`[notebook.live.test] skipping: ${skip}`);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** What the page logged: console errors, page errors, failed requests. */
interface Log {
  errors: string[];
  failed: string[];
}
function watch(page: Page): Log {
  const log: Log = { errors: [], failed: [] };
  page.on('console', (m) => m.type() === 'error' && log.errors.push(m.text()));
  page.on('pageerror', (e) => log.errors.push(`pageerror: ${String(e)}`));
  page.on('requestfailed', (r) => log.failed.push(r.url()));
  page.on('response', (r) => r.status() >= 400 && log.failed.push(`${r.status()} ${r.url()}`));
  return log;
}

// the classic Notebook's page API, as the page sees it
declare const Jupyter: {
  notebook: {
    _fully_loaded: boolean;
    kernel: { id: string; is_connected(): boolean } | null;
    execute_all_cells(): void;
    clear_all_output(): void;
    save_notebook(): Promise<unknown>;
    get_cells(): { cell_type: string; input_prompt_number?: number | string | null; get_text(): string; execute(): void }[];
    toJSON(): { cells: { cell_type: string; outputs?: { output_type: string; data?: Record<string, unknown> }[] }[] };
  };
};

/** Wait until every non-empty code cell has run (a number in its prompt); fail on an error output. */
async function waitCellsDone(page: Page, timeout: number): Promise<void> {
  await page.waitForFunction(
    () => {
      const nb = Jupyter.notebook;
      const errored = nb.toJSON().cells.some((c) => (c.outputs ?? []).some((o) => o.output_type === 'error'));
      if (errored) return true;
      return nb.get_cells().every((c) => c.cell_type !== 'code' || c.get_text().trim() === '' || typeof c.input_prompt_number === 'number');
    },
    null,
    { timeout, polling: 1000 },
  );
  const errors = await page.evaluate(() =>
    Jupyter.notebook
      .toJSON()
      .cells.flatMap((c) => c.outputs ?? [])
      .filter((o) => o.output_type === 'error')
      .map((o) => JSON.stringify(o).slice(0, 2000)),
  );
  expect(errors, 'error outputs').toEqual([]);
}

/** Chart outputs in the live notebook's model. */
async function chartOutputs(page: Page): Promise<number> {
  return page.evaluate(() => Jupyter.notebook.toJSON().cells.flatMap((c) => c.outputs ?? []).filter((o) => o.data && 'application/vnd.plotly.v1+json' in o.data).length);
}

describe.skipIf(skip !== null)('a lesson in the live Notebook', () => {
  let server: ChildProcess | null = null;
  let serverLog = '';
  let address = '';
  let browser: Browser;
  const saved = path.join(DIR, LESSON);
  const executedCopy = path.join(DIR, `executed-${LESSON}`);
  const t0 = performance.now();

  beforeAll(async () => {
    fs.rmSync(DIR, { recursive: true, force: true });
    fs.mkdirSync(DIR, { recursive: true });
    fs.copyFileSync(path.resolve('notebooks', LESSON), saved);
    const port = await freePort();
    // what `npm run notebook` runs after its build, on a scratch copy of the lesson
    server = spawn(path.resolve('node_modules', '.bin', 'tsx'), ['scripts/lessons/notebook.ts', '--dir', DIR, '--port', String(port)], {
      env: { ...process.env, LESSONS_MODE: 'QUICK' },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const found = new Promise<string>((resolve, reject) => {
      const on = (d: Buffer) => {
        serverLog += d.toString();
        const m = /notebook: the lessons are at (\S+)/.exec(serverLog);
        if (m) resolve(m[1]);
      };
      server!.stdout!.on('data', on);
      server!.stderr!.on('data', on);
      server!.on('close', (code) => reject(new Error(`notebook server exited (${code}):\n${serverLog}`)));
      setTimeout(() => reject(new Error(`no address after 120 s:\n${serverLog}`)), 120_000);
    });
    address = await found;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    if (server?.pid && server.exitCode === null) {
      const closed = new Promise((r) => server!.on('close', r));
      process.kill(-server.pid, 'SIGTERM');
      await Promise.race([closed, new Promise((r) => setTimeout(r, 15_000))]);
    }
    console.log(`[notebook.live.test] ${((performance.now() - t0) / 1000).toFixed(0)} s in all`);
  }, 60_000);

  it('npm run notebook binds to 127.0.0.1, registers tslab, prints the address', () => {
    expect(findAddress(address)).toBe(address);
    expect(address).toMatch(/^http:\/\/127\.0\.0\.1:\d+\//);
    expect(fs.existsSync(path.join(DIR, 'plotly.min.js')), 'plotly.min.js beside the notebooks').toBe(true);
  });

  it('runs all cells, reloads the page, re-runs a chart cell in the same kernel: every chart draws both times', async () => {
    const url = new URL(address);
    url.pathname = `/notebooks/${LESSON}`;
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('dialog', (d) => void d.accept()); // a "leave page?" prompt, should the notebook be dirty
    const log = watch(page);
    try {
      const t = performance.now();
      await page.goto(url.toString(), { waitUntil: 'load' });
      await page.waitForFunction(() => typeof Jupyter !== 'undefined' && Jupyter.notebook?._fully_loaded && Jupyter.notebook.kernel?.is_connected(), null, { timeout: 120_000, polling: 500 });
      const kernelId = await page.evaluate(() => Jupyter.notebook.kernel!.id);
      await page.evaluate(() => Jupyter.notebook.execute_all_cells());
      await waitCellsDone(page, 540_000);
      console.log(`[notebook.live.test] ran ${LESSON} in ${((performance.now() - t) / 1000).toFixed(0)} s`);
      const expected = await chartOutputs(page);
      expect(expected, 'chart outputs').toBeGreaterThanOrEqual(2);
      await waitDrawn(page, expected);
      const before = await charts(page);
      expect(before.divs, 'chart divs before the reload').toBe(expected);
      expect(before.drawn, `charts drawn before the reload: ${before.text.join(' | ')}`).toBe(expected);
      await page.locator('.il-plot').last().screenshot({ path: path.join(DIR, 'chart-before-reload.png') });

      // save (the Notebook signs it: its outputs stay trusted), reload, same kernel
      await page.evaluate(() => Jupyter.notebook.save_notebook());
      await page.reload({ waitUntil: 'load' });
      await page.waitForFunction(() => typeof Jupyter !== 'undefined' && Jupyter.notebook?._fully_loaded && Jupyter.notebook.kernel?.is_connected(), null, { timeout: 120_000, polling: 500 });
      expect(await page.evaluate(() => Jupyter.notebook.kernel!.id), 'same kernel after the reload').toBe(kernelId);
      await waitDrawn(page, expected);
      const reloaded = await charts(page);
      expect(reloaded.drawn, `saved charts drawn after the reload: ${reloaded.text.join(' | ')}`).toBe(expected);

      fs.copyFileSync(saved, executedCopy); // all cells' outputs, for the nbconvert and site checks below

      // the reported failure: a page with no chart on it yet (outputs cleared, page reloaded), same
      // kernel, a chart cell re-run: it must draw although the kernel has drawn charts before
      await page.evaluate(() => Jupyter.notebook.clear_all_output());
      await page.evaluate(() => Jupyter.notebook.save_notebook());
      await page.reload({ waitUntil: 'load' });
      await page.waitForFunction(() => typeof Jupyter !== 'undefined' && Jupyter.notebook?._fully_loaded && Jupyter.notebook.kernel?.is_connected(), null, { timeout: 120_000, polling: 500 });
      expect(await page.evaluate(() => Jupyter.notebook.kernel!.id), 'same kernel after the second reload').toBe(kernelId);
      expect(await page.evaluate(() => typeof (window as unknown as { Plotly?: unknown }).Plotly), 'no plotly.js on the fresh page').toBe('undefined');
      expect((await charts(page)).divs, 'no charts on the cleared page').toBe(0);
      // re-run the last chart cell: it uses the kernel's variables, so it only works in the same kernel
      const cell = await page.evaluate(() => {
        const cells = Jupyter.notebook.get_cells();
        let last = -1;
        cells.forEach((c, i) => c.cell_type === 'code' && /display\(/.test(c.get_text()) && /Chart\(/.test(c.get_text()) && (last = i));
        cells[last].execute();
        return last;
      });
      expect(cell).toBeGreaterThan(0);
      await page.waitForFunction((i) => typeof Jupyter.notebook.get_cells()[i].input_prompt_number === 'number', cell, { timeout: 300_000, polling: 500 });
      const rerun = await chartOutputs(page);
      expect(rerun, 'chart outputs of the re-run cell').toBeGreaterThanOrEqual(1);
      await waitDrawn(page, rerun);
      const after = await charts(page);
      expect(after.divs, 'chart divs after re-running a chart cell').toBe(rerun);
      expect(after.drawn, `charts drawn after re-running a chart cell: ${after.text.join(' | ')}`).toBe(rerun);
      await page.locator('.il-plot').last().screenshot({ path: path.join(DIR, 'chart-after-reload.png') });

      console.log(`[notebook.live.test] console errors (all): ${JSON.stringify(log.errors)}; failed requests: ${JSON.stringify(log.failed)}`);
      expect(log.errors.filter((e) => OURS.test(e) || e.startsWith('pageerror')), 'console errors from our code').toEqual([]);
      expect(log.failed.filter((u) => /plotly/.test(u)), 'plotly.js requests that failed').toEqual([]);
    } finally {
      await page.close();
    }
  }, 900_000);

  it('the saved notebook is under 500 KB, holds no plotly.js, and draws offline in nbconvert HTML and on the site', async () => {
    const c = await checkSavedNotebook(browser, findPython(), executedCopy, path.join(DIR, 'site'));
    expect(c.bytes, 'saved notebook size').toBeLessThan(MAX_NOTEBOOK_BYTES);
    expect(c.hasPlotlyCopy, 'a copy of plotly.js inside').toBe(false);
    expect(c.charts).toBeGreaterThanOrEqual(2);
    for (const p of c.pages) {
      expect(p.drawn, `${p.page}: charts drawn: ${p.text.join(' | ')}`).toBe(c.charts);
      expect(p.errors, `${p.page}: errors`).toEqual([]);
    }
    expect(c.pages.find((p) => p.page === 'site')?.network, 'site: network requests').toEqual([]);
  }, 180_000);
});
