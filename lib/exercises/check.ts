// Exercises that check themselves (every lesson's "Exercises" section). An exercise is a small
// typed task; its check runs the learner's function against the library's own implementation
// (or an oracle) on seeded random and edge-case inputs and says "passed" or shows the first
// failing input with expected vs got and a hint. A check never shows the solution's code.
//
// Two kinds:
//   build it         - the learner writes a function; check(fn) compares it case by case
//   predict, measure - the learner writes a number first; a cell measures it; compare() says how close
//
// Progress (which exercises pass) is kept in a local JSON file, never sent anywhere:
// $INFERENCE_LAB_PROGRESS, else ~/.inference-lab/progress.json.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { displayBundle, type MimeBundle } from '../viz/display';
import { escapeHtml } from '../viz/html';

// ---- what a check returns

/** The first input a learner's function got wrong. */
export interface Failure {
  case: string; // the case's name, e.g. 'edge: one token'
  input: string; // the input, shortened for display
  expected: string;
  got: string;
  hint: string;
}

/** The verdict of one check: passed, or the first failure. */
export interface Verdict {
  id: string;
  passed: boolean;
  cases: number; // cases run (up to and including the first failure)
  failure?: Failure;
}

/** One input for a build-it check, with a short name shown when it fails. */
export interface Case<I> {
  name: string;
  input: I;
}

/** A build-it exercise: a function of type F, checked against the library's reference. */
export interface BuildExercise<F> {
  kind: 'build';
  id: string; // 'l2.kv-bytes': lesson number, then a short slug
  lesson: number;
  title: string;
  /** the typed signature the learner implements, shown in the notebook */
  signature: string;
  /** run the learner's function; returns the verdict (does not display or record it) */
  run(fn: F): Promise<Verdict>;
}

/** A predict-then-measure exercise: the learner's number against a measured one. */
export interface PredictExercise {
  kind: 'predict';
  id: string;
  lesson: number;
  title: string;
  /** what to predict, with its unit */
  question: string;
  /** relative tolerance counted as "close" (0.2 = within 20%), or 0 for an exact answer */
  tolerance: number;
}

export type Exercise = BuildExercise<never> | PredictExercise;

// ---- building checks

/** How to compare an expected and a got value (the case's input beside them); returns null when equal, else a hint. */
export type Compare<O, I = unknown> = (expected: O, got: O, input?: I) => string | null;

export interface CaseCheckOptions<I, O> {
  id: string;
  cases: () => Case<I>[];
  /** the library's answer for an input */
  reference: (input: I) => O | Promise<O>;
  compare: Compare<O, I>;
  /** the learner's function may need the input in its own shape (default: passes the input as is) */
  call?: (fn: (...args: never[]) => unknown, input: I) => unknown;
  /**
   * added to the comparison's own message: a general hint, or a function that names the likely
   * mistake from the input, the expected and the got value (null when it has nothing to say)
   */
  hint?: string | ((input: I, expected: O, got: O) => string | null | undefined);
  /** how to show an input (default: short()) */
  describe?: (input: I) => string;
}

/**
 * Run the learner's function over every case, stop at the first mismatch or throw. Inputs are
 * cloned per call, so a function that mutates its input cannot corrupt the reference's run.
 */
export async function runCases<I, O>(fn: unknown, o: CaseCheckOptions<I, O>): Promise<Verdict> {
  if (typeof fn !== 'function') {
    return { id: o.id, passed: false, cases: 0, failure: { case: '-', input: '-', expected: 'a function', got: typeof fn, hint: 'pass your function itself, not its result' } };
  }
  const cases = o.cases();
  const describe = o.describe ?? short;
  for (let i = 0; i < cases.length; i++) {
    const c = cases[i];
    const expected = await o.reference(structuredClone(c.input));
    let got: O;
    try {
      const input = structuredClone(c.input);
      const out = o.call ? o.call(fn as (...args: never[]) => unknown, input) : (fn as (x: I) => unknown)(input);
      got = (await out) as O;
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      const general = typeof o.hint === 'string' ? o.hint : '';
      return fail(o.id, i + 1, c, describe, short(expected), `threw: ${message}`, ['your function threw on this input.', general].filter(Boolean).join(' '));
    }
    const why = o.compare(expected, got, structuredClone(c.input));
    if (why !== null) {
      let extra: string | null | undefined;
      try {
        extra = typeof o.hint === 'function' ? o.hint(structuredClone(c.input), expected, got) : o.hint;
      } catch {
        extra = null; // a diagnosis that cannot read a malformed answer says nothing
      }
      return fail(o.id, i + 1, c, describe, short(expected), short(got), [why, extra].filter(Boolean).join(' '));
    }
  }
  return { id: o.id, passed: true, cases: cases.length };
}

function fail<I>(id: string, n: number, c: Case<I>, describe: (i: I) => string, expected: string, got: string, hint: string): Verdict {
  return { id, passed: false, cases: n, failure: { case: c.name, input: describe(c.input), expected, got, hint } };
}

/** Make a build-it exercise from its description and its case check (lesson files use this). */
export function buildExercise<F, I, O>(
  meta: { id: string; lesson: number; title: string; signature: string },
  o: Omit<CaseCheckOptions<I, O>, 'id'>,
): BuildExercise<F> {
  return { kind: 'build', ...meta, run: (fn: F) => runCases(fn, { ...o, id: meta.id }) };
}

/** Make a predict-then-measure exercise. */
export function predictExercise(meta: { id: string; lesson: number; title: string; question: string; tolerance: number }): PredictExercise {
  return { kind: 'predict', ...meta };
}

// ---- seeded random inputs (lib/generate/sampling.ts's Rng)

/** A uniform integer in [lo, hi]. */
export function randomInt(rng: { next(): number }, lo: number, hi: number): number {
  return lo + Math.floor(rng.next() * (hi - lo + 1));
}

/** One of the items, uniformly. */
export function randomPick<T>(rng: { next(): number }, items: readonly T[]): T {
  return items[Math.floor(rng.next() * items.length)];
}

/** n standard normal floats (Box-Muller), times `scale`. */
export function randomNormals(rng: { next(): number }, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - rng.next();
    const r = Math.sqrt(-2 * Math.log(u)) * scale;
    const a = 2 * Math.PI * rng.next();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

// ---- comparisons

/** Numbers equal within a relative tolerance (and an absolute floor for values near 0). */
export function closeNumber(rel = 1e-6, abs = 1e-9): Compare<number> {
  return (e, g) => {
    if (typeof g !== 'number' || Number.isNaN(g)) return `expected a number, got ${typeof g === 'number' ? 'NaN' : typeof g}.`;
    return Math.abs(e - g) <= Math.max(abs, rel * Math.abs(e)) ? null : `off by ${formatRatio(g, e)}.`;
  };
}

/** Arrays (or typed arrays) of the same length, element-wise within tolerance. */
export function closeArray(rel = 1e-5, abs = 1e-6): Compare<ArrayLike<number>> {
  return (e, g) => {
    if (g === null || typeof g !== 'object' || typeof (g as ArrayLike<number>).length !== 'number') return `expected an array, got ${typeof g}.`;
    if (g.length !== e.length) return `expected length ${e.length}, got ${g.length}.`;
    for (let i = 0; i < e.length; i++) {
      if (!(Math.abs(e[i] - g[i]) <= Math.max(abs, rel * Math.abs(e[i])))) return `first difference at index ${i}: expected ${num(e[i])}, got ${num(g[i])}.`;
    }
    return null;
  };
}

/** Deep equality of plain data (numbers, strings, booleans, arrays, objects). */
export function sameValue<O>(): Compare<O> {
  return (e, g) => {
    const where = firstDifference(e, g, '');
    return where === null ? null : where ? `first difference at ${where}.` : 'not the expected answer.';
  };
}

function firstDifference(e: unknown, g: unknown, at: string): string | null {
  if (typeof e !== 'object' || e === null) return Object.is(e, g) || (typeof e === 'number' && e === g) ? null : at;
  if (typeof g !== 'object' || g === null) return at;
  if (ArrayBuffer.isView(e) || Array.isArray(e)) {
    const ea = e as unknown as ArrayLike<unknown>;
    const ga = g as unknown as ArrayLike<unknown>;
    if (typeof ga.length !== 'number' || ga.length !== ea.length) return `${at}.length`;
    for (let i = 0; i < ea.length; i++) {
      const d = firstDifference(ea[i], ga[i], `${at}[${i}]`);
      if (d !== null) return d;
    }
    return null;
  }
  const keys = new Set([...Object.keys(e), ...Object.keys(g)]);
  for (const k of keys) {
    const d = firstDifference((e as Record<string, unknown>)[k], (g as Record<string, unknown>)[k], `${at}.${k}`);
    if (d !== null) return d;
  }
  return null;
}

function num(x: number): string {
  return Number.isInteger(x) ? String(x) : Number(x.toPrecision(6)).toString();
}

function formatRatio(got: number, expected: number): string {
  if (expected === 0) return `${num(got - expected)} (expected 0)`;
  return `a factor of ${num(got / expected)} (got ${num(got)}, expected ${num(expected)})`;
}

/** A short printable form of a value: long arrays are cut to their first items. */
export function short(v: unknown, max = 8): string {
  if (typeof v === 'number') return num(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  if (typeof v !== 'object' || v === null) return String(v);
  if (ArrayBuffer.isView(v) || Array.isArray(v)) {
    const a = Array.from(v as unknown as ArrayLike<unknown>);
    const head = a.slice(0, max).map((x) => short(x, 4));
    return `[${head.join(', ')}${a.length > max ? `, ... (${a.length} items)` : ''}]`;
  }
  const entries = Object.entries(v as Record<string, unknown>);
  return `{ ${entries.slice(0, max).map(([k, x]) => `${k}: ${short(x, 4)}`).join(', ')}${entries.length > max ? ', ...' : ''} }`;
}

// ---- predictions

/** How close a prediction came to the measured value. */
export interface Comparison {
  id: string;
  predicted: number;
  measured: number;
  ratio: number; // predicted / measured
  close: boolean; // within the exercise's tolerance
}

/** Compare a prediction with a measurement (records it; the notebook shows the returned line). */
export function comparePrediction(ex: PredictExercise, predicted: number, measured: number): Comparison {
  if (!Number.isFinite(predicted)) throw new Error(`${ex.id}: write your prediction as a number first (got ${String(predicted)})`);
  if (!Number.isFinite(measured)) throw new Error(`${ex.id}: the measurement is not a number (${String(measured)})`);
  const ratio = measured === 0 ? (predicted === 0 ? 1 : Infinity) : predicted / measured;
  const close = ex.tolerance === 0 ? predicted === measured : Math.abs(ratio - 1) <= ex.tolerance;
  return { id: ex.id, predicted, measured, ratio, close };
}

// ---- progress, stored locally

export interface ProgressEntry {
  passed: boolean;
  at: string; // ISO time of the last attempt
}

/** Where progress is kept: $INFERENCE_LAB_PROGRESS, else ~/.inference-lab/progress.json. */
export function progressFile(): string {
  return process.env.INFERENCE_LAB_PROGRESS || path.join(os.homedir(), '.inference-lab', 'progress.json');
}

/** Every recorded attempt, by exercise id (empty when nothing was recorded yet). */
export function readProgress(file = progressFile()): Record<string, ProgressEntry> {
  if (!fs.existsSync(file)) return {};
  try {
    const data = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    return data !== null && typeof data === 'object' ? (data as Record<string, ProgressEntry>) : {};
  } catch {
    return {}; // a damaged file starts over rather than failing the lesson
  }
}

/** Record one attempt; a pass is kept even if a later attempt fails. */
export function recordProgress(id: string, passed: boolean, file = progressFile()): void {
  const all = readProgress(file);
  all[id] = { passed: passed || (all[id]?.passed ?? false), at: new Date().toISOString() };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(all, null, 2));
}

// ---- showing verdicts in a notebook

// inline colours, so a verdict reads as one in any notebook front end (the site's stylesheet agrees)
const STYLE = {
  pass: 'background:#e9f6ec;color:#1b5e20;padding:.3rem .6rem;border-radius:4px',
  fail: 'background:#fdecea;color:#8a1c12;padding:.3rem .6rem;border-radius:4px',
  todo: 'background:#f4f4f4;color:#555;padding:.3rem .6rem;border-radius:4px',
};

/** The verdict as markdown-free HTML and text (inputs and values escaped). */
export function verdictBundle(v: Verdict, title = v.id): MimeBundle {
  if (v.passed) {
    const text = `✓ ${title}: passed (${v.cases} cases)`;
    return { 'text/html': `<div class="il-check il-pass" style="${STYLE.pass}">${escapeHtml(text)}</div>`, 'text/plain': text };
  }
  const f = v.failure!;
  const rows: [string, string][] = [
    ['case', f.case],
    ['input', f.input],
    ['expected', f.expected],
    ['got', f.got],
    ['hint', f.hint],
  ];
  const text = [`✗ ${title}: failed at case ${v.cases}`, ...rows.map(([k, x]) => `  ${k}: ${x}`)].join('\n');
  const html =
    `<div class="il-check il-fail" style="${STYLE.fail}"><div>${escapeHtml(`✗ ${title}: failed at case ${v.cases}`)}</div>` +
    `<table class="il-table">${rows.map(([k, x]) => `<tr><th style="text-align:left">${k}</th><td style="text-align:left"><code>${escapeHtml(x)}</code></td></tr>`).join('')}</table></div>`;
  return { 'text/html': html, 'text/plain': text };
}

/** Check the learner's function, show the verdict, record progress; returns the verdict. */
export async function check<F>(ex: BuildExercise<F>, fn: F): Promise<Verdict> {
  const v = await ex.run(fn);
  recordProgress(ex.id, v.passed);
  displayBundle(verdictBundle(v, `${ex.id} ${ex.title}`));
  return v;
}

/** Compare a prediction with its measurement, show the line, record it (a close prediction counts as passed). */
export function checkPrediction(ex: PredictExercise, predicted: number, measured: number): Comparison {
  if (!Number.isFinite(predicted)) {
    // no prediction yet: say so without showing the measurement (that would spoil it) and record nothing
    const text = `… ${ex.id} ${ex.title}: write your prediction as a number first (got ${String(predicted)}), then run this cell again.`;
    displayBundle({ 'text/html': `<div class="il-check il-todo" style="${STYLE.todo}">${escapeHtml(text)}</div>`, 'text/plain': text });
    return { id: ex.id, predicted, measured, ratio: NaN, close: false };
  }
  const c = comparePrediction(ex, predicted, measured);
  recordProgress(ex.id, c.close);
  const tol = ex.tolerance === 0 ? 'exact' : `within ${Math.round(ex.tolerance * 100)}%`;
  const text =
    `${c.close ? '✓' : '✗'} ${ex.id} ${ex.title}: you predicted ${num(predicted)}, measured ${num(measured)} ` +
    `(${num(c.ratio)}× the measurement; counted as close when ${tol})`;
  displayBundle({ 'text/html': `<div class="il-check ${c.close ? 'il-pass' : 'il-fail'}" style="${c.close ? STYLE.pass : STYLE.fail}">${escapeHtml(text)}</div>`, 'text/plain': text });
  return c;
}
