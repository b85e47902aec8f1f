// Exercises that check themselves (#13): the check machinery (lib/exercises/check.ts), every
// exercise of the course against plausible wrong answers (test/exercises/lessonN.ts: each must
// fail with a hint), lessons 1-3's correct answers (test/exercises/lessonN.right.ts, the same
// code as the solution notebooks), predictions far off and exact, and the solution notebooks
// (notebooks/solutions/*.ipynb) executed through Jupyter + tslab with no cell error: each asserts
// its own verdicts. Without Jupyter the notebook suite skips with the reason, unless
// INFERENCE_LAB_REQUIRE_LESSONS=1 (CI). Progress goes to a temporary file, never the home directory.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import {
  allExercises,
  buildExercise,
  check,
  checkPrediction,
  closeArray,
  closeNumber,
  comparePrediction,
  lesson1,
  lesson2,
  lesson3,
  predictExercise,
  progressFile,
  progressRows,
  readProgress,
  recordProgress,
  runCases,
  sameValue,
  setDisplaySink,
  verdictBundle,
  type BuildExercise,
  type MimeBundle,
} from '../lib';
import { executeNotebook, type ExecResult } from '../scripts/lessons/execute';
import { listNotebooks, listSolutions } from '../scripts/lessons/main';
import { exerciseOf, loadMarked, readNotebook, renderCells, solutionCells, type Notebook } from '../scripts/lessons/render';
import { findPython, setupJupyter } from '../scripts/lessons/setup';
import { wrong as wrong1 } from './exercises/lesson1';
import { right as right1 } from './exercises/lesson1.right';
import { wrong as wrong2 } from './exercises/lesson2';
import { right as right2 } from './exercises/lesson2.right';
import { wrong as wrong3 } from './exercises/lesson3';
import { right as right3 } from './exercises/lesson3.right';
import { wrong as wrong4 } from './exercises/lesson4';
import { wrong as wrong5 } from './exercises/lesson5';
import { wrong as wrong6 } from './exercises/lesson6';

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'il-exercises-'));
process.env.INFERENCE_LAB_PROGRESS = path.join(TMP, 'progress.json');

const REQUIRE = process.env.INFERENCE_LAB_REQUIRE_LESSONS === '1';
const ART = path.resolve('test-artifacts', 'solutions');

type Wrong = Record<string, { name: string; fn: unknown }[]>;
const WRONG: Wrong = { ...wrong1, ...wrong2, ...wrong3, ...wrong4, ...wrong5, ...wrong6 };

// ---- the machinery

describe('lib/exercises/check.ts', () => {
  const squares = buildExercise<(x: number[]) => number[], number[], number[]>(
    { id: 't.squares', lesson: 0, title: 'squares', signature: '(x: number[]) => number[]' },
    {
      cases: () => [
        { name: 'one', input: [2] },
        { name: 'two', input: [1, 3] },
        { name: 'three', input: [4, 5, 6] },
      ],
      reference: (x) => x.map((v) => v * v),
      compare: sameValue<number[]>(),
      hint: (x, e, g) => (Array.isArray(g) && g.length === x.length ? 'square each element' : null),
    },
  );

  it('passes a correct function over every case', async () => {
    const v = await squares.run((x) => x.map((v) => v ** 2));
    expect(v).toEqual({ id: 't.squares', passed: true, cases: 3 });
  });

  it('stops at the first failing case and shows its input, expected, got and the diagnosed hint', async () => {
    let calls = 0;
    const v = await squares.run((x) => {
      calls++;
      return x.length >= 2 ? x.map((v) => v * 2) : x.map((v) => v * v);
    });
    expect(v.passed).toBe(false);
    expect(v.cases).toBe(2);
    expect(calls).toBe(2);
    expect(v.failure).toMatchObject({ case: 'two', input: '[1, 3]', expected: '[1, 9]', got: '[2, 6]' });
    expect(v.failure!.hint).toContain('first difference at [0]');
    expect(v.failure!.hint).toContain('square each element');
  });

  it('reports a thrown error as the failure, and a non-function as such', async () => {
    const v = await squares.run(() => {
      throw new Error('not implemented');
    });
    expect(v.failure?.got).toBe('threw: not implemented');
    expect(v.failure?.hint).toContain('threw');
    const n = await squares.run(42 as never);
    expect(n.passed).toBe(false);
    expect(n.failure?.hint).toContain('function itself');
  });

  it("a function that mutates its input cannot change the reference's answer or later cases", async () => {
    const seen: number[][] = [];
    const inputs = [[1, 2, 3]];
    const v = await runCases(
      (x: number[]) => {
        const out = x.map((a) => a + 1);
        x.fill(0);
        return out;
      },
      {
        id: 't.mutate',
        cases: () => inputs.map((input) => ({ name: 'n', input })),
        reference: (x: number[]) => {
          seen.push([...x]);
          return x.map((a) => a + 1);
        },
        compare: sameValue<number[]>(),
      },
    );
    expect(v.passed).toBe(true);
    expect(seen).toEqual([[1, 2, 3]]);
    expect(inputs[0]).toEqual([1, 2, 3]);
  });

  it('comparisons: relative tolerance, lengths, deep equality', () => {
    expect(closeNumber(1e-6)(100, 100.00001)).toBeNull();
    expect(closeNumber(1e-6)(100, 200)).toContain('factor of 2');
    expect(closeArray()([1, 2], [1])).toContain('length');
    expect(closeArray()([1, 2], new Float32Array([1, 2.5]))).toContain('index 1');
    expect(sameValue()({ a: [1, { b: 2 }] }, { a: [1, { b: 3 }] })).toContain('.a[1].b');
  });

  it('records progress in the file named by INFERENCE_LAB_PROGRESS, and keeps a pass after a later failure', async () => {
    const file = path.join(TMP, 'record.json');
    expect(readProgress(file)).toEqual({});
    recordProgress('x.one', false, file);
    expect(readProgress(file)['x.one'].passed).toBe(false);
    recordProgress('x.one', true, file);
    recordProgress('x.one', false, file);
    expect(readProgress(file)['x.one'].passed).toBe(true);
    fs.writeFileSync(file, '{ not json');
    expect(readProgress(file)).toEqual({});
    // check() writes to progressFile(), the temporary file here, and shows the verdict without the solution
    expect(progressFile()).toBe(path.join(TMP, 'progress.json'));
    const shown: MimeBundle[] = [];
    setDisplaySink((b) => shown.push(b));
    try {
      await check(squares, (x: number[]) => x.map((v) => v * v));
      checkPrediction(predictExercise({ id: 't.predict', lesson: 0, title: 't', question: 'q', tolerance: 0.1 }), NaN, 3);
    } finally {
      setDisplaySink(null);
    }
    expect(readProgress()['t.squares'].passed).toBe(true);
    expect(readProgress()['t.predict']).toBeUndefined(); // no prediction, nothing recorded
    expect(String(shown[0]['text/plain'])).toContain('passed (3 cases)');
    expect(String(shown[1]['text/plain'])).toContain('write your prediction');
    expect(String(shown[1]['text/plain'])).not.toContain('3');
  });

  it('a failing verdict escapes its input in HTML', () => {
    const b = verdictBundle({ id: 'x', passed: false, cases: 1, failure: { case: 'c', input: '<script>x</script>', expected: '1', got: '2', hint: 'h' } });
    expect(String(b['text/html'])).toContain('&lt;script&gt;');
    expect(String(b['text/html'])).not.toContain('<script>');
  });
});

// ---- every exercise of the course

describe('every exercise', () => {
  const all = allExercises();
  const builds = all.filter((e) => e.kind === 'build') as unknown as BuildExercise<unknown>[];

  it('ids are unique; lessons 1-3 have at least 3 build-it and 1 predict exercise each', () => {
    expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
    for (const [n, obj] of [[1, lesson1], [2, lesson2], [3, lesson3]] as const) {
      const list = Object.values(obj);
      expect(list.filter((e) => e.kind === 'build').length, `lesson ${n}`).toBeGreaterThanOrEqual(3);
      expect(list.filter((e) => e.kind === 'predict').length, `lesson ${n}`).toBeGreaterThanOrEqual(1);
      for (const e of list) expect(e.lesson).toBe(n);
    }
    expect(progressRows(1, path.join(TMP, 'none.json')).every((r) => r.status === 'not tried')).toBe(true);
  });

  it('every build-it exercise has at least one plausible wrong answer', () => {
    const missing = builds.filter((e) => (WRONG[e.id] ?? []).length === 0).map((e) => e.id);
    expect(missing).toEqual([]);
  });

  for (const ex of builds) {
    it(`${ex.id}: every wrong answer fails with a hint`, async () => {
      for (const w of WRONG[ex.id] ?? []) {
        const v = await ex.run(w.fn as never);
        expect(v.passed, `${ex.id}: "${w.name}" passed`).toBe(false);
        expect(v.failure?.hint.length ?? 0, `${ex.id}: "${w.name}" hint`).toBeGreaterThan(20);
      }
    });
  }

  for (const ex of all.filter((e) => e.kind === 'predict')) {
    it(`${ex.id}: a far-off prediction is not close, an exact one is`, () => {
      if (ex.kind !== 'predict') return;
      expect(comparePrediction(ex, 1000, 3).close).toBe(false);
      expect(comparePrediction(ex, 0.001, 3).close).toBe(false);
      expect(comparePrediction(ex, 3, 3).close).toBe(true);
      expect(ex.question.length).toBeGreaterThan(20);
    });
  }
});

describe('lessons 1-3: the correct answers pass, each check in a few seconds', () => {
  const RIGHT: Record<string, unknown> = { ...right1, ...right2, ...right3 };
  for (const ex of [lesson1, lesson2, lesson3].flatMap((l) => Object.values(l)).filter((e) => e.kind === 'build') as unknown as BuildExercise<unknown>[]) {
    it(`${ex.id}`, async () => {
      const t0 = performance.now();
      const v = await ex.run(RIGHT[ex.id] as never);
      expect(v.failure, JSON.stringify(v.failure)).toBeUndefined();
      expect(v.passed).toBe(true);
      expect(performance.now() - t0).toBeLessThan(5000);
    });
  }
});

describe('lessons 1-3 pose every exercise of their lesson', () => {
  for (const [n, obj] of [[1, lesson1], [2, lesson2], [3, lesson3]] as const) {
    it(`lesson ${n}: a cell checks each exercise, in order, without throwing, and the section ends with the progress table`, () => {
      const file = listNotebooks().find((f) => path.basename(f).startsWith(`0${n}-`))!;
      const cells = readNotebook(file).cells.filter((c) => c.cell_type === 'code').map((c) => (Array.isArray(c.source) ? c.source.join('') : c.source));
      const checked = cells.map(exerciseOf).filter((x): x is string => x !== null);
      expect(checked).toEqual(Object.keys(obj).map((k) => `lesson${n}.${k}`));
      for (const src of cells.filter((c) => exerciseOf(c))) expect(src).not.toMatch(/throw new Error\('not implemented/);
      expect(cells.some((c) => c.includes(`showProgress(${n})`))).toBe(true);
      const sol = listSolutions().find((f) => path.basename(f) === path.basename(file));
      expect(sol, `notebooks/solutions/${path.basename(file)}`).toBeDefined();
    });
  }
});

// ---- the site: each solution folded under its exercise

describe('rendering exercises with their solutions', () => {
  it('finds the exercise a cell checks, and folds the solution (with its reasoning) under the lesson cell', async () => {
    expect(exerciseOf('const v = await check(lesson2.kvBytesPerToken, mine);')).toBe('lesson2.kvBytesPerToken');
    expect(exerciseOf('const p = checkPrediction(lesson1.predictDoubleBatch, x, y);')).toBe('lesson1.predictDoubleBatch');
    expect(exerciseOf("import { lesson1, check } from 'inference-lab';")).toBeNull();
    const verdict = verdictBundle({ id: 'l2.kv-bytes', passed: false, cases: 1, failure: { case: 'c', input: 'i', expected: '8192', got: '0', hint: 'Did you count both K and V?' } });
    const lesson: Notebook = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: {},
      cells: [
        { cell_type: 'markdown', source: '### Exercise 1 (build it): KV bytes' },
        { cell_type: 'code', source: 'function mine() { return 0; }\nconst verdict1 = await check(lesson2.kvBytesPerToken, mine);', outputs: [{ output_type: 'display_data', data: verdict }] },
        { cell_type: 'markdown', source: '### Exercise 2' },
      ],
    };
    const solutions: Notebook = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: {},
      cells: [
        { cell_type: 'markdown', source: '# Solutions' },
        { cell_type: 'markdown', source: 'K and V, every layer, KV heads only.' },
        { cell_type: 'code', source: 'function solved() { return 42; }\nconst v = await check(lesson2.kvBytesPerToken, solved);', outputs: [] },
      ],
    };
    expect([...solutionCells(solutions).keys()]).toEqual(['lesson2.kvBytesPerToken']);
    expect(solutionCells(solutions).get('lesson2.kvBytesPerToken')!.length).toBe(2);
    await loadMarked();
    const html = renderCells(lesson, solutions);
    const fold = html.indexOf('<details class="solution">');
    expect(fold).toBeGreaterThan(html.indexOf('Did you count both K and V?')); // after the cell's verdict and its hint
    expect(fold).toBeLessThan(html.indexOf('Exercise 2'));
    expect(html.slice(fold)).toContain('Show solution');
    expect(html.slice(fold)).toContain('return 42');
    expect(html.slice(fold)).toContain('K and V, every layer');
    expect(html.slice(0, fold)).not.toContain('return 42');
    expect(renderCells(lesson)).not.toContain('solution');
  });
});

// ---- the solution notebooks, executed

function why(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
}
const noJupyter = why(() => findPython());
if (noJupyter && REQUIRE) throw new Error(`INFERENCE_LAB_REQUIRE_LESSONS=1 but the solution notebooks cannot run: ${noJupyter}`);
if (noJupyter) console.warn(`[exercises.test] skipping the solution notebooks: ${noJupyter}`);

describe.skipIf(noJupyter !== null)('solution notebooks', () => {
  const runs: ExecResult[] = [];

  beforeAll(async () => {
    const { python, env } = setupJupyter(() => undefined);
    fs.rmSync(ART, { recursive: true, force: true });
    for (const nb of listSolutions()) {
      const r = await executeNotebook(nb, ART, { python, env: { ...env, LESSONS_MODE: 'QUICK', INFERENCE_LAB_PROGRESS: path.join(TMP, 'solutions.json') } });
      console.log(`[exercises.test] solutions/${path.basename(nb)}: ${r.ok ? 'ok' : 'FAILED'} in ${r.seconds.toFixed(0)} s`);
      runs.push(r);
    }
  }, 1_200_000);

  it('there is one solution notebook per lesson with exercises, and each runs with no cell error (each asserts its verdicts)', () => {
    const lessons = [...new Set(allExercises().map((e) => e.lesson))];
    expect(runs.length).toBeGreaterThanOrEqual(3);
    for (const n of lessons.filter((l) => l <= 3)) expect(runs.some((r) => path.basename(r.notebook).startsWith(`0${n}-`)), `solutions for lesson ${n}`).toBe(true);
    for (const r of runs) expect(r.ok, `${path.basename(r.notebook)}:\n${r.error}`).toBe(true);
    for (const r of runs.filter((x) => x.ok)) {
      const nb = readNotebook(r.executed);
      for (const c of nb.cells) for (const o of c.outputs ?? []) expect(o.output_type, `${path.basename(r.notebook)}: error output`).not.toBe('error');
    }
  });

  it('every build-it exercise of a solved lesson shows a passing verdict; progress went to the temporary file', () => {
    const solved = runs.filter((r) => r.ok).map((r) => Number(path.basename(r.notebook).slice(0, 2)));
    const text = runs.filter((r) => r.ok).map((r) => JSON.stringify(readNotebook(r.executed).cells.map((c) => c.outputs ?? []))).join('\n');
    for (const ex of allExercises().filter((e) => e.kind === 'build' && solved.includes(e.lesson))) expect(text, ex.id).toContain(`✓ ${ex.id} `);
    const progress = readProgress(path.join(TMP, 'solutions.json'));
    for (const ex of allExercises().filter((e) => e.kind === 'build' && solved.includes(e.lesson))) expect(progress[ex.id]?.passed, ex.id).toBe(true);
  });
});
