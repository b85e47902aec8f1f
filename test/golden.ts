// The HF-transformers oracle files in data/golden (written by scripts/train/train.py).
import * as fs from 'fs';

import { initBackend } from '../lib/backend';
import { wasmThreadsRegistered } from '../lib/wasmThreads';
import { ORACLE_TIE, type GoldenEntry, type GoldenFile } from '../lib/oracle/hf';

export type { GoldenEntry } from '../lib/oracle/hf';

export interface GoldenModel {
  logits_file: string;
  entries: GoldenEntry[];
  validation: { ppl: number; tokens: number };
  test: { ppl: number; tokens: number };
}

export interface Golden extends GoldenFile {
  models: Record<'target' | 'draft', GoldenModel> & Record<string, GoldenModel>;
  encodings: { text: string; ids: number[] }[];
}

export const TIE = ORACLE_TIE;

export function loadGolden(): Golden {
  return JSON.parse(fs.readFileSync('data/golden/golden.json', 'utf8')) as Golden;
}

/**
 * The golden test-split prompts of 16-256 tokens: the free text the GPU speculative benchmarks measure
 * on (acceptance varies a lot from prompt to prompt, so one or two prompts make a poor sample).
 */
export const FREE_TEXT_PROMPTS = ['test-16', 'test-24', 'test-32', 'test-48', 'test-64', 'test-96', 'test-128', 'test-160', 'test-200', 'test-256'];

/** The token ids of the golden prompts with these names, in order. */
export function promptIds(golden: Golden, names: readonly string[]): number[][] {
  return names.map((n) => {
    const p = golden.prompts.find((q) => q.name === n);
    if (!p) throw new Error(`golden.json has no prompt '${n}'`);
    return p.ids;
  });
}

/**
 * How many leading tokens of `got` equal the oracle's continuation; a first mismatch where the oracle's
 * margin is below TIE counts as a tie and the rest of the sequence is accepted (it legitimately diverges).
 */
export function agreement(got: number[], entry: GoldenEntry): { prefix: number; tie: boolean } {
  let k = 0;
  while (k < entry.continuation.length && got[k] === entry.continuation[k]) k++;
  const tie = k < entry.continuation.length && entry.margins[k] < TIE;
  return { prefix: k, tie };
}

/**
 * Let the event loop run (a macrotask, not a microtask). vitest's worker fails the whole run when
 * a test file keeps its event loop busy for 60 s (its RPC to the main process times out), so long
 * synchronous loops over prompts call this now and then.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Run `body` on the wasm backend with `threads` threads (tfjs-wasm's threaded build for more than
 * one), then put back the threads it had. A switch restarts the backend, so no tensor may live
 * across it.
 */
export async function onWasmThreads<T>(threads: number, body: () => Promise<T>): Promise<T> {
  const before = wasmThreadsRegistered();
  await initBackend({ prefer: 'wasm', wasmThreads: threads });
  try {
    return await body();
  } finally {
    await initBackend({ prefer: 'wasm', wasmThreads: before });
  }
}
