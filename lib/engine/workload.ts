// Workloads for the engine (lesson 5, "continuous batching"): request arrivals (Poisson, gamma,
// or all at once), prompt and output lengths (fixed, uniform, or a ShareGPT-like long tail),
// and shared system prompts (prefix caching). Seeded: the same spec gives the same requests.
// replay() feeds a workload to an engine on its clock: real (waits for arrivals) or virtual
// (jumps to them), so a run on a slow CPU keeps the same timeline.

import { Rng, type SamplingParamsInput } from '../generate/sampling';
import type { LLMEngine, RequestOutput } from './llmEngine';

/** Inter-arrival times: Poisson (exponential gaps), gamma (burstier for cv > 1), or all at t = 0. */
export type ArrivalSpec = { kind: 'poisson'; ratePerSec: number } | { kind: 'gamma'; ratePerSec: number; cv: number } | { kind: 'burst' };

/** A length distribution (tokens, integers, clipped to [min, max]). */
export type LengthSpec =
  | { kind: 'fixed'; value: number }
  | { kind: 'uniform'; min: number; max: number }
  /** long tail like ShareGPT: exp(N(ln median, sigma)) */
  | { kind: 'lognormal'; median: number; sigma: number; min: number; max: number };

/** What makeWorkload builds. */
export interface WorkloadSpec {
  numRequests: number;
  arrival: ArrivalSpec;
  /** prompt length (the user part, after any system prompt) */
  promptLen: LengthSpec;
  outputLen: LengthSpec;
  /** shared system prompts: `count` distinct ones of `length` tokens, prepended to a `share` of requests */
  systemPrompts?: { count: number; length: number; share: number };
  /** token ids are drawn from [1, vocabSize) */
  vocabSize: number;
  seed: number;
}

/** One request of a workload. */
export interface WorkloadRequest {
  id: string;
  arrivalMs: number;
  promptTokenIds: number[];
  /** output length: maxTokens with ignoreEos */
  maxTokens: number;
  /** which system prompt it starts with, or null */
  systemPrompt: number | null;
}

// ---- random draws

function normal(rng: Rng): number {
  const u = Math.max(rng.next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

// Marsaglia-Tsang gamma(shape k, scale 1)
function gamma(rng: Rng, k: number): number {
  if (k < 1) return gamma(rng, k + 1) * Math.pow(Math.max(rng.next(), 1e-12), 1 / k);
  const d = k - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = normal(rng);
    const v = (1 + c * x) ** 3;
    if (v <= 0) continue;
    const u = rng.next();
    if (Math.log(Math.max(u, 1e-12)) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
}

/** One draw of a length distribution. */
export function drawLength(spec: LengthSpec, rng: Rng): number {
  switch (spec.kind) {
    case 'fixed':
      return spec.value;
    case 'uniform':
      return spec.min + Math.floor(rng.next() * (spec.max - spec.min + 1));
    case 'lognormal': {
      const x = Math.round(Math.exp(Math.log(spec.median) + spec.sigma * normal(rng)));
      return Math.min(spec.max, Math.max(spec.min, x));
    }
    default:
      throw new Error(`unknown length distribution ${JSON.stringify(spec)}`);
  }
}

/** Gap to the next arrival (ms). */
export function drawGapMs(spec: ArrivalSpec, rng: Rng): number {
  switch (spec.kind) {
    case 'burst':
      return 0;
    case 'poisson':
      return (-Math.log(Math.max(1 - rng.next(), 1e-12)) / spec.ratePerSec) * 1000;
    case 'gamma': {
      const k = 1 / (spec.cv * spec.cv); // shape; mean gap = 1 / rate
      return (gamma(rng, k) / k / spec.ratePerSec) * 1000;
    }
    default:
      throw new Error(`unknown arrival process ${JSON.stringify(spec)}`);
  }
}

/** Build a seeded workload (lesson 5). */
export function makeWorkload(spec: WorkloadSpec): WorkloadRequest[] {
  if (!Number.isInteger(spec.numRequests) || spec.numRequests < 1) throw new Error(`numRequests must be a positive integer, got ${spec.numRequests}`);
  const rng = new Rng(spec.seed);
  const token = () => 1 + Math.floor(rng.next() * (spec.vocabSize - 1));
  const sys = spec.systemPrompts;
  const systems = sys ? Array.from({ length: sys.count }, () => Array.from({ length: sys.length }, token)) : [];
  const out: WorkloadRequest[] = [];
  let t = 0;
  for (let i = 0; i < spec.numRequests; i++) {
    if (i > 0) t += drawGapMs(spec.arrival, rng);
    const which = sys && rng.next() < sys.share ? Math.floor(rng.next() * sys.count) : null;
    const user = Array.from({ length: drawLength(spec.promptLen, rng) }, token);
    out.push({
      id: `w${i}`,
      arrivalMs: t,
      promptTokenIds: which === null ? user : [...systems[which], ...user],
      maxTokens: drawLength(spec.outputLen, rng),
      systemPrompt: which,
    });
  }
  return out;
}

/** Options of replay. */
export interface ReplayOptions {
  /** sampling params of every request (default greedy); maxTokens and ignoreEos come from the workload */
  params?: SamplingParamsInput;
  /** called after every step */
  onStep?: (engine: LLMEngine) => void;
}

/**
 * Feed a workload to an engine on the engine's clock (lesson 5): each request is added when the
 * clock passes its arrival; when the engine is idle the clock waits (real) or jumps (virtual) to
 * the next arrival. Returns the finished requests in workload order.
 */
export async function replay(engine: LLMEngine, workload: readonly WorkloadRequest[], options: ReplayOptions = {}): Promise<RequestOutput[]> {
  const byArrival = [...workload].sort((a, b) => a.arrivalMs - b.arrivalMs);
  const got = new Map<string, RequestOutput>();
  const t0 = engine.clock.now();
  let next = 0;
  while (next < byArrival.length || engine.hasUnfinished()) {
    const now = engine.clock.now() - t0;
    while (next < byArrival.length && byArrival[next].arrivalMs <= now) {
      const r = byArrival[next++];
      engine.addRequest(r.promptTokenIds, { temperature: 0, ...options.params, maxTokens: r.maxTokens, ignoreEos: true }, { requestId: r.id, arrivalTime: t0 + r.arrivalMs });
    }
    if (!engine.hasUnfinished()) {
      await engine.clock.waitUntil(t0 + byArrival[next].arrivalMs);
      continue;
    }
    for (const out of await engine.step()) got.set(out.requestId, out);
    options.onStep?.(engine);
  }
  return workload.map((r) => got.get(r.id)!);
}
