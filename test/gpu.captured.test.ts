// The captured WebGPU path (lib/gpu) in CI: no GPU here, so Dawn runs on SwiftShader, the CPU
// Vulkan driver Debian's Chromium ships (scripts/setup.sh installs it). Kernel checks against
// plain tfjs, greedy tokens against the HF oracle, and the engine captured vs eager. Slow
// (SwiftShader): shapes and token counts are kept small. Without SwiftShader this test FAILS,
// saying why, rather than passing silently.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

import { beforeAll, describe, expect, it } from 'vitest';

const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

interface Result {
  adapter: string;
  software: boolean;
  kernels: { kernel: string; ok: boolean; maxAbsError: number; tolerance: number }[];
  greedy: { format: string; prompt: string; got: number[]; want: number[] }[];
  engine: { eager: number[][]; captured: number[][]; capturedSpeculative: number[][]; capturedSpeculativeOne: number[][] };
  overlap: Record<'eager' | 'captured' | 'overlapped' | 'sampledOneByOne' | 'sampledOverlapped', { tokens: number[][]; finishReasons: string[]; overlapped: number; preemptions: number }>;
  dispatchesPerStep: number;
  errors: string[];
}

// async, so the test worker's event loop stays free while SwiftShader works (minutes)
async function runCheck(): Promise<Result> {
  if (!fs.existsSync(ICD)) {
    throw new Error(`SwiftShader's Vulkan driver (${ICD}) is missing: install Debian's chromium (bash scripts/setup.sh does) to run WebGPU on this CPU`);
  }
  const env = { ...process.env, LD_LIBRARY_PATH: `/usr/lib/chromium:${process.env.LD_LIBRARY_PATH ?? ''}`, VK_ICD_FILENAMES: ICD };
  const child = spawn('npx', ['tsx', 'test/gpu/captured.check.ts'], { env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (status !== 0 || !line) throw new Error(`the captured-path check did not finish (exit ${status}):\n${stderr.slice(-3000)}`);
  return JSON.parse(line.slice(7)) as Result;
}

describe('captured WebGPU path on SwiftShader', () => {
  let result: Result | null = null;
  beforeAll(async () => {
    result = await runCheck();
  }, 1_300_000);
  const get = (): Result => result!;

  it('runs on a WebGPU adapter with no device errors', () => {
    const r = get();
    expect(r.adapter.length).toBeGreaterThan(0);
    expect(r.errors).toEqual([]);
    // 5 dispatches per layer (2 layers in the draft) + embed, lm head, argmax
    expect(r.dispatchesPerStep).toBe(5 * 2 + 3);
  });

  it('every fused kernel matches its plain-tfjs op chain', () => {
    const r = get();
    expect(r.kernels.length).toBeGreaterThanOrEqual(10);
    for (const k of r.kernels) expect(k.maxAbsError, k.kernel).toBeLessThanOrEqual(k.tolerance);
  });

  it('greedy tokens equal the HF oracle (fp32 and bf16 weights, batch of 2, ids chained on the GPU, steps submitted in parts)', () => {
    const r = get();
    expect(r.greedy.length).toBe(16); // fp32, bf16; stepped, chained, and submitted in parts on the decode and the shared tile
    for (const g of r.greedy) expect(g.got, `${g.format} ${g.prompt}`).toEqual(g.want);
  });

  it('the engine on the captured path generates what the eager engine does (greedy picked on the GPU; speculative too)', () => {
    const r = get();
    expect(r.engine.captured.length).toBe(3);
    expect(r.engine.captured).toEqual(r.engine.eager);
    expect(r.engine.capturedSpeculative).toEqual(r.engine.eager);
    expect(r.engine.capturedSpeculativeOne).toEqual(r.engine.eager.slice(0, 1));
    for (const ids of r.engine.captured) expect(ids.length).toBe(6);
  });

  it('overlapped steps (the next step submitted before the last one is read) generate what one step at a time does', () => {
    const o = get().overlap;
    // the scenario does what it is meant to: a stop token mid-run, preemption, overlap happening
    expect(o.eager.finishReasons).toEqual(['length', 'length', 'stop', 'length', 'length']);
    expect(o.eager.tokens.map((t) => t.length)).toEqual([7, 3, 3, 5, 8]);
    expect(o.overlapped.preemptions).toBeGreaterThan(0);
    expect(o.overlapped.overlapped).toBeGreaterThan(5);
    expect(o.captured.overlapped).toBe(0);
    // the same tokens and finish reasons every way
    for (const k of ['captured', 'overlapped'] as const) {
      expect(o[k].tokens, k).toEqual(o.eager.tokens);
      expect(o[k].finishReasons, k).toEqual(o.eager.finishReasons);
    }
    // a sampled request among greedy ones: steps run one at a time while it runs, the same tokens
    expect(o.sampledOverlapped.tokens).toEqual(o.sampledOneByOne.tokens);
    expect(o.sampledOverlapped.tokens[3].length).toBe(6);
  });
});
