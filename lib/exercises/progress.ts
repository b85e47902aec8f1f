// Which exercises pass: every lesson's list, and the learner's local progress file beside it.
import { showTable } from '../viz/display';
import { readProgress, type Exercise } from './check';
import { lesson1Exercises } from './lesson1';
import { lesson2Exercises } from './lesson2';
import { lesson3Exercises } from './lesson3';
import { lesson4Exercises } from './lesson4';
import { lesson5Exercises } from './lesson5';
import { lesson6Exercises } from './lesson6';

/** Every exercise of the course, lesson by lesson. */
export function allExercises(): Exercise[] {
  return [lesson1Exercises, lesson2Exercises, lesson3Exercises, lesson4Exercises, lesson5Exercises, lesson6Exercises].flat();
}

/** One row per exercise (of one lesson, or all): passed, tried or not yet. */
export function progressRows(lesson?: number, file?: string): { exercise: string; kind: string; status: string }[] {
  const done = readProgress(file);
  return allExercises()
    .filter((e) => lesson === undefined || e.lesson === lesson)
    .map((e) => ({
      exercise: `${e.id} ${e.title}`,
      kind: e.kind === 'build' ? 'build it' : 'predict, then measure',
      status: done[e.id] === undefined ? 'not tried' : done[e.id].passed ? '✓ passed' : '✗ not yet',
    }));
}

/** Show the progress table in a notebook (read from the local progress file; nothing leaves the machine). */
export function showProgress(lesson?: number): void {
  const rows = progressRows(lesson);
  const passed = rows.filter((r) => r.status.startsWith('✓')).length;
  showTable(rows, { caption: `${passed} of ${rows.length} exercises passed${lesson === undefined ? '' : ` in lesson ${lesson}`}` });
}
