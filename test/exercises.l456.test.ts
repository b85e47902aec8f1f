// Lessons 4-6's exercise checks: the correct answers (as in notebooks/solutions/) pass, every
// plausible wrong answer in test/exercises/lessonN.ts fails with a hint, and each check is fast.
import { describe, expect, it } from 'vitest';

import { lesson4, lesson5, lesson6, type BuildExercise } from '../lib';
import { right as right4 } from './exercises/lesson4.right';
import { right as right5 } from './exercises/lesson5.right';
import { right as right6 } from './exercises/lesson6.right';
import { wrong as wrong4 } from './exercises/lesson4';
import { wrong as wrong5 } from './exercises/lesson5';
import { wrong as wrong6 } from './exercises/lesson6';

const lessons = [
  { n: 4, exercises: lesson4 as Record<string, { kind: string; id: string }>, right: right4, wrong: wrong4 },
  { n: 5, exercises: lesson5 as Record<string, { kind: string; id: string }>, right: right5, wrong: wrong5 },
  { n: 6, exercises: lesson6 as Record<string, { kind: string; id: string }>, right: right6, wrong: wrong6 },
];

for (const { n, exercises, right, wrong } of lessons) {
  describe(`lesson ${n} exercises`, () => {
    const builds = Object.values(exercises).filter((e) => e.kind === 'build') as unknown as BuildExercise<unknown>[];
    it('has at least 3 build-it and 1 predict exercise', () => {
      expect(builds.length).toBeGreaterThanOrEqual(3);
      expect(Object.values(exercises).filter((e) => e.kind === 'predict').length).toBeGreaterThanOrEqual(1);
    });
    for (const ex of builds) {
      it(`${ex.id}: the correct answer passes, in a few seconds`, async () => {
        const t0 = performance.now();
        const v = await ex.run(right[ex.id] as never);
        expect(v.failure, JSON.stringify(v.failure)).toBeUndefined();
        expect(v.passed).toBe(true);
        expect(performance.now() - t0).toBeLessThan(5000);
      });
      it(`${ex.id}: every wrong answer fails with a hint`, async () => {
        const list = wrong[ex.id] ?? [];
        expect(list.length).toBeGreaterThan(0);
        for (const w of list) {
          const v = await ex.run(w.fn as never);
          expect(v.passed, `${w.name} passed`).toBe(false);
          expect(v.failure?.hint.length ?? 0, w.name).toBeGreaterThan(20);
        }
      });
    }
  });
}
