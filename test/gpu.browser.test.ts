// The captured WebGPU path in a browser: Chromium's own WebGPU (SwiftShader on a machine
// without a GPU) runs lib/gpu bundled for the page and generates the HF oracle's greedy tokens
// for one golden prompt. Fails, saying why, when Chromium is missing.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CHROMIUM = '/usr/bin/chromium';
// WebGPU on: a secure context (localhost), unsafe WebGPU allowed in Linux Chromium, SwiftShader for Vulkan
const FLAGS = ['--headless', '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu', '--use-angle=swiftshader', '--enable-features=Vulkan'];
const OUT = path.resolve('test-artifacts', 'browser-gpu');
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json' };

describe('captured WebGPU path in Chromium', () => {
  let server: http.Server;
  let browser: Browser;
  let base = '';

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (bash scripts/setup.sh does)`);
    fs.mkdirSync(OUT, { recursive: true });
    // the page's bundle; Node-only imports (fs, path, the Dawn package) are never reached in a page
    await build({ entryPoints: ['test/gpu/browser-entry.ts'], bundle: true, format: 'iife', platform: 'browser', outfile: path.join(OUT, 'bundle.js'), external: ['fs', 'path', 'webgpu', 'os', 'child_process', 'worker_threads'], logLevel: 'warning' });
    fs.writeFileSync(path.join(OUT, 'index.html'), '<!doctype html><meta charset="utf-8"><script>window.require = () => ({});</script><script src="bundle.js"></script>');
    // a static server over the repository (the page fetches data/models and data/golden)
    server = http.createServer((req, res) => {
      const url = decodeURIComponent((req.url ?? '/').split('?')[0]);
      const file = path.join(process.cwd(), url.startsWith('/page/') ? path.join('test-artifacts', 'browser-gpu', url.slice(6)) : url);
      if (!file.startsWith(process.cwd()) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
      fs.createReadStream(file).pipe(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    server?.close();
  });

  it('generates the HF oracle greedy tokens for a golden prompt on the page WebGPU', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${base}/page/index.html`);
    const hasGpu = await page.evaluate(() => 'gpu' in navigator);
    expect(hasGpu, 'navigator.gpu in Chromium (--enable-unsafe-webgpu)').toBe(true);
    const r = await page.evaluate(() => (globalThis as unknown as { __capturedRun: (p: number, s: number) => Promise<{ adapter: string; got: number[]; want: number[]; errors: string[] }> }).__capturedRun(1, 5));
    console.log(`[gpu.browser] adapter ${r.adapter}: got ${r.got.join(',')}, oracle ${r.want.join(',')}`);
    expect(errors).toEqual([]);
    expect(r.errors).toEqual([]);
    expect(r.got).toEqual(r.want);
    expect(r.got.length).toBe(5);
  }, 600_000);
});
