// Sampling: turn one row of logits [V] into the next token id.
//
// Everything here works on plain Float32Array rows read back from the device, in float64
// arithmetic on the CPU, so a seeded run draws the same tokens on every tfjs backend (as far as
// the logits themselves agree). Pipeline, in vLLM's order:
//
//   logits --penalties--> --temperature--> --top-k--> --min-p--> --top-p--> probs --draw--> token
//
// (top-k and min-p both keep a "top prefix" relative to the maximum, so they commute; top-p
// comes last because it renormalises over what the earlier filters kept.)
// Shape letters: V = vocabulary size.

// ---- parameters

/** Why a sequence finished: `'stop'` (stop token or stop string) or `'length'` (maxTokens). */
export type FinishReason = 'stop' | 'length';

/**
 * Resolved sampling parameters of one request (vLLM's `SamplingParams`, camelCased).
 * Build with {@link resolveSamplingParams}, which fills defaults and validates.
 * Lesson 2 (the generation loop); lesson 4 reuses {@link logitsToProbs} for speculative decoding.
 */
export interface SamplingParams {
  /** Number of completions per prompt (the engine fans out; each gets its own seed stream). */
  n: number;
  /** 0 = greedy (argmax); values below 1e-5 are treated as greedy, as vLLM does. */
  temperature: number;
  /** Keep the k most likely tokens; 0 = off. Ties at the k-th value are all kept. */
  topK: number;
  /** Nucleus: keep the smallest set with probability >= topP; 1 = off. */
  topP: number;
  /** Keep tokens with p >= minP * pmax; 0 = off. */
  minP: number;
  /** PRNG seed. Absent in the input: resolveSamplingParams draws one and records it here. */
  seed: number;
  /** Maximum number of generated tokens (vLLM's default is 16). */
  maxTokens: number;
  /** Token ids that end generation (in addition to the model's EOS unless ignoreEos). */
  stopTokenIds: readonly number[];
  /** Strings that end generation; the output text excludes them (unless includeStopStrInOutput). */
  stopStrings: readonly string[];
  /** Keep the matched stop string / stop token text in the output. */
  includeStopStrInOutput: boolean;
  /** Do not stop at the model's EOS token(s). */
  ignoreEos: boolean;
  /** Number of top logprobs to return per token, 0..20 (the chosen token's logprob is always returned). */
  logprobs: number;
  /** > 1 discourages tokens seen in prompt or output (logit / r if positive, * r if negative); 1 = off. */
  repetitionPenalty: number;
  /** Subtracted once from the logit of every token already generated; 0 = off. */
  presencePenalty: number;
  /** Subtracted per occurrence from the logit of every token already generated; 0 = off. */
  frequencyPenalty: number;
}

/** What a caller may pass: any subset of {@link SamplingParams}. */
export type SamplingParamsInput = Partial<SamplingParams>;

/** Largest number of top logprobs a request may ask for (as vLLM's default limit). */
export const MAX_LOGPROBS = 20;

/** Temperatures below this are greedy (vLLM's `_SAMPLING_EPS`). */
const GREEDY_TEMPERATURE = 1e-5;

const DEFAULTS: Omit<SamplingParams, 'seed'> = {
  n: 1,
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  maxTokens: 16,
  stopTokenIds: [],
  stopStrings: [],
  includeStopStrInOutput: false,
  ignoreEos: false,
  logprobs: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
};

const KNOWN_FIELDS: readonly string[] = [...Object.keys(DEFAULTS), 'seed'];

const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x);
const isFiniteNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

// field -> [check, allowed range as written in the error]
const CHECKS: { [K in keyof SamplingParams]: [(v: unknown) => boolean, string] } = {
  n: [(v) => isInt(v) && v >= 1, 'an integer >= 1'],
  temperature: [(v) => isFiniteNum(v) && v >= 0, 'a finite number >= 0 (0 = greedy)'],
  topK: [(v) => isInt(v) && v >= 0, 'an integer >= 0 (0 = off)'],
  topP: [(v) => isFiniteNum(v) && v > 0 && v <= 1, 'a number in (0, 1] (1 = off)'],
  minP: [(v) => isFiniteNum(v) && v >= 0 && v <= 1, 'a number in [0, 1] (0 = off)'],
  seed: [(v) => Number.isSafeInteger(v), 'a safe integer (omit it for a random seed)'],
  maxTokens: [(v) => isInt(v) && v >= 1, 'an integer >= 1'],
  stopTokenIds: [(v) => Array.isArray(v) && v.every((t) => isInt(t) && t >= 0), 'an array of integers >= 0'],
  stopStrings: [(v) => Array.isArray(v) && v.every((s) => typeof s === 'string' && s.length > 0), 'an array of non-empty strings'],
  includeStopStrInOutput: [(v) => typeof v === 'boolean', 'a boolean'],
  ignoreEos: [(v) => typeof v === 'boolean', 'a boolean'],
  logprobs: [(v) => isInt(v) && v >= 0 && v <= MAX_LOGPROBS, `an integer in [0, ${MAX_LOGPROBS}]`],
  repetitionPenalty: [(v) => isFiniteNum(v) && v > 0, 'a finite number > 0 (1 = off)'],
  presencePenalty: [(v) => isFiniteNum(v) && v >= -2 && v <= 2, 'a number in [-2, 2] (0 = off)'],
  frequencyPenalty: [(v) => isFiniteNum(v) && v >= -2 && v <= 2, 'a number in [-2, 2] (0 = off)'],
};

function show(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'bigint' || v === undefined) return String(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** A random seed in [0, 2^32), for requests that did not give one. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}

/**
 * Fill defaults and validate. A bad value throws an Error naming the field, the allowed range and
 * the value given (`temperature must be a finite number >= 0 (0 = greedy), got -1`); an unknown
 * field (a typo) throws too. Fields set to `undefined` count as absent. Without a seed, a random
 * one is drawn and recorded in the result so the run can be reported and replayed.
 */
export function resolveSamplingParams(input: SamplingParamsInput = {}): SamplingParams {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new Error(`sampling params must be an object, got ${show(input)}`);
  }
  for (const key of Object.keys(input)) {
    if (!KNOWN_FIELDS.includes(key)) {
      throw new Error(`unknown sampling parameter '${key}'; known: ${KNOWN_FIELDS.join(', ')}`);
    }
  }
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
  const params: SamplingParams = { ...DEFAULTS, seed: randomSeed(), ...given };
  for (const key of Object.keys(CHECKS) as (keyof SamplingParams)[]) {
    const [ok, range] = CHECKS[key];
    if (!ok(params[key])) throw new Error(`${key} must be ${range}, got ${show(params[key])}`);
  }
  // copy the arrays so later changes to the caller's arrays cannot change a running request
  return { ...params, stopTokenIds: [...params.stopTokenIds], stopStrings: [...params.stopStrings] };
}

/** True when these params pick the argmax (temperature 0, or below 1e-5 like vLLM). */
export function isGreedy(params: Pick<SamplingParams, 'temperature'>): boolean {
  return params.temperature < GREEDY_TEMPERATURE;
}

// ---- seeded PRNG

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * One step of xoshiro128** (Blackman & Vigna): advances `state` (4 words) in place and returns a
 * uint32. Exported so tests can check it against the reference output.
 */
export function xoshiro128ss(state: Uint32Array): number {
  const result = Math.imul(rotl(Math.imul(state[1], 5), 7), 9) >>> 0;
  const t = state[1] << 9;
  state[2] ^= state[0];
  state[3] ^= state[1];
  state[1] ^= state[2];
  state[0] ^= state[3];
  state[2] ^= t;
  state[3] = rotl(state[3], 11);
  return result;
}

// splitmix32: spreads a seed over the generator's 128-bit state
function splitmix32(x: number): [number, number] {
  const next = (x + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [next, (z ^ (z >>> 16)) >>> 0];
}

/**
 * Seeded pseudo-random generator (xoshiro128**, seeded through splitmix32). Pure integer maths,
 * so the same seed gives the same stream on every platform. One Rng per sequence; sampleToken
 * draws exactly one number per sampled (non-greedy) token.
 */
export class Rng {
  readonly seed: number;
  private readonly state = new Uint32Array(4);

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new Error(`seed must be a safe integer, got ${show(seed)}`);
    this.seed = seed;
    // two splitmix32 streams, one per 32-bit half of the seed: distinct seeds give distinct states
    let lo = (seed % 2 ** 32) | 0;
    let hi = (Math.floor(seed / 2 ** 32) | 0) ^ 0x5bd1e995;
    [lo, this.state[0]] = splitmix32(lo);
    [lo, this.state[1]] = splitmix32(lo);
    [hi, this.state[2]] = splitmix32(hi);
    [hi, this.state[3]] = splitmix32(hi);
    if (this.state.every((w) => w === 0)) this.state[0] = 1; // the all-zero state is a fixed point
  }

  /** A uniform uint32. */
  nextUint32(): number {
    return xoshiro128ss(this.state);
  }

  /** A uniform float in [0, 1) with 53 random bits. */
  next(): number {
    const a = this.nextUint32() >>> 5; // 27 bits
    const b = this.nextUint32() >>> 6; // 26 bits
    return (a * 67108864 + b) / 9007199254740992; // (a * 2^26 + b) / 2^53
  }
}

// ---- pure functions on one logits row [V]

// max of a row; throws on NaN / +Infinity / an all -Infinity row
function rowMax(logits: Float32Array): number {
  if (logits.length === 0) throw new Error('logits row is empty');
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (Number.isNaN(x) || x === Infinity) throw new Error(`logits[${i}] is ${x}; logits must be finite or -Infinity`);
    if (x > max) max = x;
  }
  if (max === -Infinity) throw new Error('every logit is -Infinity: no token can be sampled');
  return max;
}

/** Index of the largest value; ties go to the lowest id. */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Log-softmax of a row [V], computed stably (max subtracted) in float64. */
export function logitsToLogprobs(logits: Float32Array): Float32Array {
  const max = rowMax(logits);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const logZ = max + Math.log(sum);
  const out = new Float32Array(logits.length); // [V]
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - logZ;
  return out;
}

/** logits / temperature (temperature > 0; greedy is handled by the caller, not by dividing by 0). */
export function applyTemperature(logits: Float32Array, temperature: number): Float32Array {
  if (!(Number.isFinite(temperature) && temperature > 0)) {
    throw new Error(`temperature must be a finite number > 0 here (use argmax for greedy), got ${temperature}`);
  }
  const out = new Float32Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] / temperature;
  return out;
}

// k-th largest value (k = 1 is the max) by quickselect on a float64 copy: O(V) expected
function kthLargest(values: Float32Array, k: number): number {
  const a = Float64Array.from(values);
  const target = k - 1;
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    // median of three as pivot; Hoare partition into [>= pivot | <= pivot] (descending)
    const x = a[lo], y = a[(lo + hi) >>> 1], z = a[hi];
    const pivot = Math.max(Math.min(x, y), Math.min(Math.max(x, y), z));
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target]; // between j and i everything equals the pivot
  }
  return a[target];
}

/**
 * Ids of the k largest values, sorted by value descending, ties by lowest id: O(V + k log k)
 * (quickselect for the threshold, then a sort of only the k survivors).
 */
export function topKIndices(values: Float32Array, k: number): Int32Array {
  const V = values.length;
  const m = Math.max(0, Math.min(k, V));
  const ids: number[] = [];
  if (m === V) {
    for (let i = 0; i < V; i++) ids.push(i);
  } else if (m > 0) {
    const pivot = kthLargest(values, m);
    for (let i = 0; i < V; i++) if (values[i] > pivot) ids.push(i);
    for (let i = 0; i < V && ids.length < m; i++) if (values[i] === pivot) ids.push(i);
  }
  ids.sort((a, b) => values[b] - values[a] || a - b);
  return Int32Array.from(ids);
}

/**
 * Keep the k largest logits, set the rest to -Infinity; 0 (or k >= V) = off. Like gpt-fast and
 * vLLM, every logit equal to the k-th largest is kept, so ties can keep more than k tokens.
 */
export function topKFilter(logits: Float32Array, k: number): Float32Array {
  rowMax(logits);
  if (k <= 0 || k >= logits.length) return Float32Array.from(logits);
  const pivot = kthLargest(logits, k);
  const out = new Float32Array(logits.length); // [V]
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] >= pivot ? logits[i] : -Infinity;
  return out;
}

/**
 * Keep tokens whose probability p_i >= minP * pmax, i.e. logit_i >= max + log(minP) (no softmax
 * needed); 0 = off. The most likely token always survives.
 */
export function minPFilter(logits: Float32Array, minP: number): Float32Array {
  const max = rowMax(logits);
  if (minP <= 0) return Float32Array.from(logits);
  const threshold = max + Math.log(minP);
  const out = new Float32Array(logits.length); // [V]
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] >= threshold ? logits[i] : -Infinity;
  return out;
}

// the logit value at which the probability mass, summed largest first, reaches p: a quickselect
// weighted by probability (3-way partition around a pivot, keep the side that holds the
// crossing), O(V) expected, no sort. `w` are the probabilities; returns -Infinity if rounding
// leaves the total just below p (then everything is kept).
function nucleusThreshold(logits: Float32Array, w: Float64Array, p: number): number {
  const ids = new Int32Array(logits.length); // [V] candidates, partitioned in place
  for (let i = 0; i < ids.length; i++) ids[i] = i;
  let lo = 0;
  let hi = ids.length - 1;
  let need = p; // mass still to collect from ids[lo..hi]
  while (lo <= hi) {
    const pivot = logits[ids[(lo + hi) >>> 1]];
    // partition ids[lo..hi] into [> pivot | == pivot | < pivot] (Dutch national flag)
    let gt = lo;
    let i = lo;
    let lt = hi;
    let massGT = 0;
    let massEQ = 0;
    while (i <= lt) {
      const id = ids[i];
      const x = logits[id];
      if (x > pivot) {
        massGT += w[id];
        ids[i++] = ids[gt];
        ids[gt++] = id;
      } else if (x < pivot) {
        ids[i] = ids[lt];
        ids[lt--] = id;
      } else {
        massEQ += w[id];
        i++;
      }
    }
    if (massGT >= need) hi = gt - 1; // the crossing is among the larger values
    else if (massGT + massEQ >= need) return pivot; // it is at the pivot value
    else {
      need -= massGT + massEQ; // take all of them, look among the smaller values
      lo = lt + 1;
    }
  }
  return -Infinity;
}

/**
 * Nucleus filter: keep the smallest set of most likely tokens whose total probability is >= p
 * (at least one token; tokens of equal probability are taken lowest id first), the rest
 * -Infinity; 1 = off. O(V) expected: a probability-weighted quickselect finds the logit where the
 * cumulative mass crosses p, so the vocabulary is never sorted.
 */
export function topPFilter(logits: Float32Array, p: number): Float32Array {
  const max = rowMax(logits);
  const V = logits.length;
  if (p >= 1) return Float32Array.from(logits);
  // probabilities [V]
  const w = new Float64Array(V);
  let Z = 0;
  for (let i = 0; i < V; i++) Z += w[i] = Math.exp(logits[i] - max);
  for (let i = 0; i < V; i++) w[i] /= Z;
  const threshold = nucleusThreshold(logits, w, p);
  // keep everything above the threshold, then tokens at it, lowest id first, until the mass is >= p
  const out = new Float32Array(V).fill(-Infinity); // [V]
  let cum = 0;
  for (let i = 0; i < V; i++) {
    if (logits[i] > threshold) {
      out[i] = logits[i];
      cum += w[i];
    }
  }
  for (let i = 0; i < V && (cum < p || cum === 0); i++) {
    if (logits[i] === threshold) {
      out[i] = logits[i];
      cum += w[i];
    }
  }
  return out;
}

/** Optional context for penalties: the prompt and the tokens generated so far. */
export interface TokenHistory {
  promptTokenIds: readonly number[];
  outputTokenIds: readonly number[];
}

/**
 * vLLM's penalties: repetition (over prompt and output tokens: logit / r if > 0, logit * r
 * otherwise), then presence and frequency (over output tokens: logit -= presence + frequency *
 * count). Returns `logits` itself when no penalty is active, a new row otherwise.
 */
export function applyPenalties(
  logits: Float32Array,
  params: Pick<SamplingParams, 'repetitionPenalty' | 'presencePenalty' | 'frequencyPenalty'>,
  history: TokenHistory,
): Float32Array {
  const { repetitionPenalty: r, presencePenalty: presence, frequencyPenalty: frequency } = params;
  if (r === 1 && presence === 0 && frequency === 0) return logits;
  const V = logits.length;
  const out = Float32Array.from(logits);
  const counts = new Map<number, number>();
  for (const t of history.outputTokenIds) counts.set(t, (counts.get(t) ?? 0) + 1);
  const seen = new Set<number>([...history.promptTokenIds, ...counts.keys()]);
  for (const t of seen) {
    if (!(Number.isInteger(t) && t >= 0 && t < V)) throw new Error(`token id ${t} in history is outside [0, ${V})`);
    if (r !== 1) out[t] = out[t] > 0 ? out[t] / r : out[t] * r;
  }
  for (const [t, c] of counts) out[t] -= presence + frequency * c;
  return out;
}

/**
 * The distribution the sampler draws from: penalties, temperature, top-k, min-p, top-p, softmax.
 * Greedy params give a one-hot row at the argmax. Returned as probabilities [V] summing to 1
 * (speculative decoding's accept rule needs exactly this `p`).
 */
export function logitsToProbs(
  logits: Float32Array,
  params: Pick<SamplingParams, 'temperature' | 'topK' | 'topP' | 'minP' | 'repetitionPenalty' | 'presencePenalty' | 'frequencyPenalty'>,
  history?: TokenHistory,
): Float32Array {
  rowMax(logits);
  let x = history ? applyPenalties(logits, params, history) : logits;
  const probs = new Float32Array(x.length); // [V]
  if (isGreedy(params)) {
    probs[argmax(x)] = 1;
    return probs;
  }
  if (params.temperature !== 1) x = applyTemperature(x, params.temperature);
  if (params.topK > 0) x = topKFilter(x, params.topK);
  if (params.minP > 0) x = minPFilter(x, params.minP);
  if (params.topP < 1) x = topPFilter(x, params.topP);
  const max = rowMax(x);
  let Z = 0;
  for (let i = 0; i < x.length; i++) Z += Math.exp(x[i] - max);
  for (let i = 0; i < x.length; i++) probs[i] = Math.exp(x[i] - max) / Z;
  return probs;
}

/**
 * Inverse-CDF draw of one id from non-negative weights [V] (need not sum to 1, e.g. the residual
 * max(0, p - q) of speculative decoding). Uses exactly one `rng.next()`.
 */
export function sampleFromProbs(weights: Float32Array, rng: Rng): number {
  let total = 0;
  let last = -1;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i];
    if (!(w >= 0 && w < Infinity)) throw new Error(`weights[${i}] is ${w}; weights must be finite and >= 0`);
    total += w;
    if (w > 0) last = i;
  }
  if (last < 0) throw new Error('every weight is 0: no token can be sampled');
  const target = rng.next() * total;
  let cum = 0;
  for (let i = 0; i < weights.length; i++) {
    cum += weights[i];
    if (weights[i] > 0 && target < cum) return i;
  }
  return last; // rounding pushed target past the final sum
}

/** One id with its logprob. */
export interface TokenLogprob {
  token: number;
  logprob: number;
}

/** The sampled token, its logprob and (when params.logprobs > 0) the top alternatives. */
export interface SampledToken {
  token: number;
  /** log p(token) under the raw model distribution: log-softmax of the logits as given. */
  logprob: number;
  /** The params.logprobs most likely tokens of that same raw distribution, most likely first. */
  topLogprobs?: TokenLogprob[];
}

/**
 * Pick the next token from one logits row [V]. Greedy (temperature 0) takes the argmax, ties to
 * the lowest id, and draws nothing from `rng`; otherwise one draw from {@link logitsToProbs}.
 *
 * The reported `logprob` (and `topLogprobs`) are under the *raw* model distribution: log-softmax of
 * `logits` exactly as passed in, at temperature 1, before penalties and filters — what vLLM reports
 * by default (`logprobs_mode="raw_logprobs"`). A token kept by top-p therefore reports its
 * unfiltered logprob, not the renormalised one.
 */
/**
 * Greedy with nothing else asked (no penalties, no top logprobs): the token is the argmax and
 * its logprob one log-sum-exp away, so a GPU can pick it without sending the row back.
 */
export function greedyFastPath(params: Pick<SamplingParams, 'temperature' | 'repetitionPenalty' | 'presencePenalty' | 'frequencyPenalty' | 'logprobs'>): boolean {
  return isGreedy(params) && params.repetitionPenalty === 1 && params.presencePenalty === 0 && params.frequencyPenalty === 0 && params.logprobs === 0;
}

export function sampleToken(
  logits: Float32Array,
  params: SamplingParams,
  rng: Rng,
  history?: TokenHistory,
): SampledToken {
  if (greedyFastPath(params)) {
    // fast path (most decode steps of a benchmark): one argmax and one log-sum-exp pass, no [V] arrays
    const token = argmax(logits);
    const max = logits[token];
    let sum = 0;
    for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
    return { token, logprob: -Math.log(sum) };
  }
  const raw = logitsToLogprobs(logits); // [V]
  const probs = logitsToProbs(logits, params, history); // [V]
  const token = isGreedy(params) ? argmax(probs) : sampleFromProbs(probs, rng);
  const result: SampledToken = { token, logprob: raw[token] };
  if (params.logprobs > 0) {
    result.topLogprobs = Array.from(topKIndices(raw, params.logprobs), (id) => ({ token: id, logprob: raw[id] }));
  }
  return result;
}

// ---- stopping

/** What {@link StopChecker.push} reports after one token. */
export interface StopStatus {
  finished: boolean;
  /** null while running. */
  finishReason: FinishReason | null;
  /** The stop token id or stop string that matched; null otherwise (vLLM's `stop_reason`). */
  stopReason: number | string | null;
  /**
   * Text that is now safe to stream. While running, the last (longest stop string - 1) characters
   * are held back, since they could be the start of a stop string; all of it is released at the end.
   */
  delta: string;
}

/**
 * Decides when a sequence stops, fed each generated token id with its incremental decoded text
 * (append-only). Stops on a stop token id (or EOS unless ignoreEos), on a stop string — also one
 * spanning several tokens — and at maxTokens ('length'). As vLLM: the output text excludes the
 * stop string and the stop token's text (unless includeStopStrInOutput) and anything after them;
 * a stop string found on the last allowed token reports 'stop'.
 */
export class StopChecker {
  private readonly maxTokens: number;
  private readonly stopIds: Set<number>;
  private readonly stopStrings: readonly string[];
  private readonly includeStop: boolean;
  private readonly holdBack: number;
  private out = '';
  private emitted = 0;
  private count = 0;
  private status: StopStatus | null = null;

  constructor(
    params: Pick<SamplingParams, 'maxTokens' | 'stopTokenIds' | 'stopStrings' | 'includeStopStrInOutput' | 'ignoreEos'>,
    eosTokenIds: readonly number[] = [],
  ) {
    this.maxTokens = params.maxTokens;
    this.stopIds = new Set([...params.stopTokenIds, ...(params.ignoreEos ? [] : eosTokenIds)]);
    this.stopStrings = [...params.stopStrings];
    this.includeStop = params.includeStopStrInOutput;
    const longest = Math.max(0, ...this.stopStrings.map((s) => s.length));
    this.holdBack = this.includeStop ? 0 : Math.max(0, longest - 1);
  }

  /** The output text so far (final, stop string removed, once finished). */
  get text(): string {
    return this.out;
  }

  /** Number of tokens pushed. */
  get numTokens(): number {
    return this.count;
  }

  /** True once a stop condition has been met. */
  get finished(): boolean {
    return this.status !== null;
  }

  /** Feed one generated token and its decoded text; returns whether to stop and what to stream. */
  push(tokenId: number, textDelta: string): StopStatus {
    if (this.status) throw new Error('StopChecker.push called after the sequence finished');
    this.count++;
    let reason: FinishReason | null = null;
    let stopReason: number | string | null = null;
    // 1. stop token: its text is not part of the output
    if (this.stopIds.has(tokenId)) {
      reason = 'stop';
      stopReason = tokenId;
      if (this.includeStop) this.out += textDelta;
    } else {
      // 2. stop strings: search only where a new match can be (it must end in the new text)
      const prevLen = this.out.length;
      this.out += textDelta;
      const match = this.findStopString(prevLen);
      if (match) {
        reason = 'stop';
        stopReason = match.stop;
        this.out = this.out.slice(0, match.index + (this.includeStop ? match.stop.length : 0));
      }
    }
    // 3. length
    if (!reason && this.count >= this.maxTokens) reason = 'length';

    const end = reason ? this.out.length : Math.max(this.emitted, this.out.length - this.holdBack);
    const delta = this.out.slice(this.emitted, end);
    this.emitted = end;
    const status: StopStatus = { finished: reason !== null, finishReason: reason, stopReason, delta };
    if (reason) this.status = status;
    return status;
  }

  // earliest stop string occurrence that ends after prevLen
  private findStopString(prevLen: number): { index: number; stop: string } | null {
    let best: { index: number; stop: string } | null = null;
    for (const stop of this.stopStrings) {
      const index = this.out.indexOf(stop, Math.max(0, prevLen - stop.length + 1));
      if (index >= 0 && (!best || index < best.index)) best = { index, stop };
    }
    return best;
  }
}
