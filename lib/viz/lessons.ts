/**
 * What every lesson notebook needs besides the lesson's own library part: the QUICK/FULL knob,
 * paths into the package's data/ whatever the notebook's working directory, and machine facts.
 *
 * Lesson: used by every lesson.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export type LessonMode = 'QUICK' | 'FULL';

/**
 * The run size, from the environment: LESSONS_MODE=FULL (or FULL=1) for the long runs; QUICK
 * (the default) keeps each lesson to a few minutes on a 2-core CPU.
 */
export function lessonMode(env: NodeJS.ProcessEnv = process.env): LessonMode {
  const m = (env.LESSONS_MODE ?? '').trim().toUpperCase();
  if (m === 'FULL' || (m === '' && /^(1|true|yes)$/i.test(env.FULL ?? ''))) return 'FULL';
  if (m !== '' && m !== 'QUICK') throw new Error(`LESSONS_MODE must be QUICK or FULL, got '${env.LESSONS_MODE}'`);
  return 'QUICK';
}

/** Pick the QUICK or the FULL value of a knob. */
export function byMode<T>(quick: T, full: T, mode: LessonMode = lessonMode()): T {
  return mode === 'FULL' ? full : quick;
}

/** The package root (the folder with package.json and data/): lib/viz/ (sources) and dist/viz/ (compiled) sit two levels under it. */
export function packageRoot(): string {
  const root = path.resolve(__dirname, '..', '..');
  if (!fs.existsSync(path.join(root, 'package.json'))) throw new Error(`package root not found above ${__dirname}`);
  return root;
}

/** A path under the package's data/ folder, e.g. dataPath('models', 'target'). */
export function dataPath(...parts: string[]): string {
  return path.join(packageRoot(), 'data', ...parts);
}
