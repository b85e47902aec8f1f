// Our CPU kernels on threads in a browser: a cross-origin isolated page (COOP/COEP headers) gets
// tfjs-wasm's threaded build, and our kernels' Web Workers over its shared memory. The page
// decodes the HF oracle's greedy tokens for one golden prompt on 2 threads, through the fused
// decode step (every thread inside decodeLayers, the page's main thread spinning at the barriers
// where it may not sleep) and op by op (XNNPACK's threads). Fails, saying why, when Chromium is
// missing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openPage, servePage, type PageServer } from './browser.helpers';

interface CpuRun {
  crossOriginIsolated: boolean;
  reason: string;
  threads: number;
  pool: number;
  fma: string;
  fusedStep: boolean;
  fused: number[];
  ops: number[];
  want: number[];
}

describe('CPU kernels on Web Workers in Chromium', () => {
  let page: PageServer;

  beforeAll(async () => {
    page = await servePage('browser-cpu', 'test/browser/cpu-entry.ts', true);
  }, 300_000);

  afterAll(async () => {
    await page?.close();
  });

  it('a cross-origin isolated page decodes the oracle greedy tokens on 2 threads, fused step and op by op', async () => {
    const { tab, errors } = await openPage(page);
    const r = await tab.evaluate(() => (globalThis as unknown as { __cpuRun: (p: number, s: number) => Promise<CpuRun> }).__cpuRun(1, 12));
    console.log(`[threads.browser] ${r.reason}; pool ${r.pool} threads, fma ${r.fma}: got ${r.fused.join(',')}, oracle ${r.want.join(',')}`);
    expect(errors).toEqual([]);
    expect(r.crossOriginIsolated).toBe(true);
    expect(r.pool).toBe(2);
    expect(r.fusedStep, 'the fused decode step runs on this model').toBe(true);
    expect(r.threads).toBeGreaterThanOrEqual(2);
    expect(r.want.length).toBe(12);
    expect(r.fused).toEqual(r.want);
    expect(r.ops).toEqual(r.want);
  }, 600_000);
});
