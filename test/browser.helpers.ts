// A static server over the repository and Chromium through playwright-core, for the tests that run
// lib code in a page (gpu.browser.test.ts, threads.browser.test.ts). Each test bundles its page
// entry with esbuild into test-artifacts/<name>/ and serves it under /page/; everything else is
// the repository (the page fetches data/models, data/golden and tfjs-wasm's .wasm files).
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

import { build } from 'esbuild';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
// WebGPU on: a secure context (localhost), unsafe WebGPU allowed in Linux Chromium, SwiftShader for Vulkan
const FLAGS = ['--headless', '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu', '--use-angle=swiftshader', '--enable-features=Vulkan'];
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json', '.wasm': 'application/wasm' };
// cross-origin isolation: what a page needs for SharedArrayBuffer (tfjs-wasm's threaded build, our kernels' workers)
const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

export interface PageServer {
  /** http://127.0.0.1:PORT */
  base: string;
  browser: Browser;
  close(): Promise<void>;
}

/**
 * Bundle `entry` for a page, serve it (at /page/index.html) and the repository, and launch
 * Chromium. Fails, saying why, when Chromium is missing. `isolated`: serve every file with the
 * cross-origin isolation headers.
 */
export async function servePage(name: string, entry: string, isolated = false): Promise<PageServer> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (bash scripts/setup.sh does)`);
  const out = path.resolve('test-artifacts', name);
  fs.mkdirSync(out, { recursive: true });
  // Node-only imports (fs, path, the Dawn package, worker_threads, v8) are never reached in a page
  await build({ entryPoints: [entry], bundle: true, format: 'iife', platform: 'browser', outfile: path.join(out, 'bundle.js'), external: ['fs', 'path', 'webgpu', 'os', 'child_process', 'worker_threads', 'v8', 'node:*'], logLevel: 'warning' });
  fs.writeFileSync(path.join(out, 'index.html'), '<!doctype html><meta charset="utf-8"><script>window.require = () => ({});</script><script src="bundle.js"></script>');
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? '/').split('?')[0]);
    const file = path.join(process.cwd(), url.startsWith('/page/') ? path.join('test-artifacts', name, url.slice(6)) : url);
    if (!file.startsWith(process.cwd()) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', ...(isolated ? ISOLATION : {}) });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  return {
    base: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    browser,
    async close() {
      await browser.close();
      server.close();
    },
  };
}

/** A new tab on the served page (/page/index.html), and the page errors it throws (collected as they come). */
export async function openPage(server: PageServer): Promise<{ tab: Page; errors: string[] }> {
  const tab = await server.browser.newPage();
  const errors: string[] = [];
  tab.on('pageerror', (e) => errors.push(String(e)));
  await tab.goto(`${server.base}/page/index.html`);
  return { tab, errors };
}
