// Execute one notebook through Jupyter: nbconvert --execute with the tslab kernel, no
// --allow-errors (a cell error fails the run, and tslab would silently skip later cells anyway).

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { copyPlotlyJs } from '../../lib/viz/display';
import { KERNEL_NAME } from './setup';

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

export interface ExecResult {
  notebook: string;
  /** the executed copy */
  executed: string;
  seconds: number;
  ok: boolean;
  /** the failing cell and its error, trimmed */
  error?: string;
}

export interface ExecOptions {
  python: string;
  env: NodeJS.ProcessEnv;
  /** seconds per cell (default 900) */
  cellTimeout?: number;
  /** called every few seconds while it runs */
  onTick?: (seconds: number) => void;
}

export function executeNotebook(src: string, outDir: string, o: ExecOptions): Promise<ExecResult> {
  fs.mkdirSync(outDir, { recursive: true });
  const executed = path.join(outDir, path.basename(src));
  const args = [
    '-m', 'nbconvert', '--to', 'notebook', '--execute', src,
    '--output-dir', outDir, '--output', path.basename(src),
    `--ExecutePreprocessor.kernel_name=${KERNEL_NAME}`,
    `--ExecutePreprocessor.timeout=${o.cellTimeout ?? 900}`,
    '--ExecutePreprocessor.startup_timeout=120',
  ];
  const t0 = performance.now();
  return new Promise((resolve) => {
    // exercises record progress: a batch run writes it beside its output unless told where (never the learner's own file)
    const env = { INFERENCE_LAB_PROGRESS: path.join(outDir, 'progress.json'), ...o.env };
    const child = spawn(o.python, args, { env, cwd: path.dirname(src), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = o.onTick ? setInterval(() => o.onTick!((performance.now() - t0) / 1000), 5000) : null;
    child.on('close', (code) => {
      if (timer) clearInterval(timer);
      const seconds = (performance.now() - t0) / 1000;
      const ok = code === 0 && fs.existsSync(executed);
      if (ok) besideExecuted(executed, o);
      resolve({ notebook: src, executed, seconds, ok, ...(ok ? {} : { error: trimError(stderr) }) });
    });
  });
}

/**
 * Make the executed copy open with its charts drawn: plotly.min.js beside it (the charts load it
 * from there, in Jupyter and in nbconvert HTML written next to it), and the notebook signed as
 * trusted for this user (`jupyter trust`: you ran it, so its outputs' scripts may run when you
 * reopen it, as they would had you run it in the Notebook yourself).
 */
function besideExecuted(executed: string, o: ExecOptions): void {
  copyPlotlyJs(path.dirname(executed));
  spawnSync(o.python, ['-m', 'nbformat.sign', '--log-level=WARN', executed], { env: o.env, stdio: 'ignore' });
}

/** The part of nbconvert's output that says which cell failed and why. */
export function trimError(out: string): string {
  const clean = out.replace(ANSI, '');
  const at = clean.indexOf('An error occurred while executing the following cell');
  const text = at >= 0 ? clean.slice(at) : clean;
  const lines = text.split('\n');
  return lines.length > 60 ? [...lines.slice(0, 30), '...', ...lines.slice(-25)].join('\n') : text;
}
