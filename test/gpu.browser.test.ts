// The captured WebGPU path in a browser: Chromium's own WebGPU (SwiftShader on a machine
// without a GPU) runs lib/gpu bundled for the page and generates the HF oracle's greedy tokens
// for one golden prompt. Fails, saying why, when Chromium is missing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openPage, servePage, type PageServer } from './browser.helpers';

describe('captured WebGPU path in Chromium', () => {
  let page: PageServer;

  beforeAll(async () => {
    page = await servePage('browser-gpu', 'test/gpu/browser-entry.ts');
  }, 300_000);

  afterAll(async () => {
    await page?.close();
  });

  it('generates the HF oracle greedy tokens for a golden prompt on the page WebGPU', async () => {
    const { tab, errors } = await openPage(page);
    const hasGpu = await tab.evaluate(() => 'gpu' in navigator);
    expect(hasGpu, 'navigator.gpu in Chromium (--enable-unsafe-webgpu)').toBe(true);
    const r = await tab.evaluate(() => (globalThis as unknown as { __capturedRun: (p: number, s: number) => Promise<{ adapter: string; got: number[]; want: number[]; errors: string[] }> }).__capturedRun(1, 5));
    console.log(`[gpu.browser] adapter ${r.adapter}: got ${r.got.join(',')}, oracle ${r.want.join(',')}`);
    expect(errors).toEqual([]);
    expect(r.errors).toEqual([]);
    expect(r.got).toEqual(r.want);
    expect(r.got.length).toBe(5);
  }, 600_000);
});
