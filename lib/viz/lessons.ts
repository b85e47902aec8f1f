/**
 * What every lesson notebook needs besides the lesson's own library part: the QUICK/FULL knob,
 * paths into the package's data/ whatever the notebook's working directory, and machine facts.
 *
 * Lesson: used by every lesson.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { FigureSource } from './figures';

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

/** A committed benchmark record from the H200 (data/bench/webgpu/), with the label that names it. */
export interface H200Record<R = Record<string, unknown>> {
  /** the path a reader finds it at, e.g. data/bench/webgpu/serve-webgpu.json */
  file: string;
  /** the machine and the commit it ran, e.g. "nvidia nvidia-h200, commit 58466ea, 2026-11-30" */
  label: string;
  /** `{ kind: 'h200', detail: "file (label)" }`, for a chart's or table's `source` */
  source: FigureSource;
  date: string;
  commit: string | null;
  result: R;
}

/**
 * Read a committed H200 record by name ('serve-webgpu' reads data/bench/webgpu/serve-webgpu.json)
 * and label it with the machine (its GPU adapter) and the commit it ran (lessons 1-6).
 */
export function h200Record<R = Record<string, unknown>>(name: string): H200Record<R> {
  const file = `data/bench/webgpu/${name.endsWith('.json') ? name : `${name}.json`}`;
  const rec = JSON.parse(fs.readFileSync(path.join(packageRoot(), file), 'utf8')) as {
    date?: string;
    git?: { commit?: string; dirty?: boolean } | null;
    machine?: { backend?: { adapter?: { vendor?: string; device?: string } } };
    result: R;
  };
  const adapter = rec.machine?.backend?.adapter;
  const machine = adapter ? `${adapter.vendor ?? ''} ${adapter.device ?? ''}`.trim() : 'machine not recorded';
  const commit = rec.git?.commit ?? null;
  const date = (rec.date ?? '').slice(0, 10);
  const label = `${machine}, ${commit ? `commit ${commit.slice(0, 7)}${rec.git?.dirty ? ' (dirty)' : ''}` : 'commit not recorded'}${date ? `, ${date}` : ''}`;
  return { file, label, source: { kind: 'h200', detail: `${file} (${label})` }, date: rec.date ?? '', commit, result: rec.result };
}
