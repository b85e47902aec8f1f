/**
 * Helpers every benchmark shares: machine facts, timing statistics, the JSON a chart reads, and
 * a progress bar on stderr. Benchmarks report figures; they assert no timing.
 *
 * Lesson: used by every benchmark section (first met in the roofline lesson).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { backendInfo, parseThreadsFlag, shutdownBackend, type BackendFacts } from '../backend';
import { percentile } from '../eval/stats';

// ---- machine

export interface MachineInfo {
  os: string;
  platform: string;
  arch: string;
  cpuModel: string;
  cpuCores: number;
  totalMemoryBytes: number;
  node: string;
  /** facts of the backend initBackend picked; null before initBackend */
  backend: BackendFacts | null;
}

/** What ran the benchmark, without the hostname or user. */
export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    os: `${os.type()} ${os.release()}`,
    platform: process.platform,
    arch: process.arch,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCores: cpus.length,
    totalMemoryBytes: os.totalmem(),
    node: process.versions.node,
    backend: backendInfo()?.facts ?? null,
  };
}

// ---- timing

export interface TimingStats {
  warmup: number;
  repeats: number;
  samplesMs: number[];
  minMs: number;
  medianMs: number;
  meanMs: number;
  p90Ms: number;
  maxMs: number;
}

/** Statistics of timing samples in milliseconds (median and p90 by `percentile`). */
export function summarize(samplesMs: number[], opts: { warmup?: number } = {}): TimingStats {
  if (samplesMs.length === 0) throw new RangeError('summarize: no samples');
  const n = samplesMs.length;
  return {
    warmup: opts.warmup ?? 0,
    repeats: n,
    samplesMs: [...samplesMs],
    minMs: Math.min(...samplesMs),
    medianMs: percentile(samplesMs, 50),
    meanMs: samplesMs.reduce((s, v) => s + v, 0) / n,
    p90Ms: percentile(samplesMs, 90),
    maxMs: Math.max(...samplesMs),
  };
}

/**
 * Run `fn` `warmup` times untimed, then `repeats` times timed (awaited if it returns a promise).
 * For GPU work, `fn` must itself wait for the result (e.g. `await t.data()`).
 */
export async function timeIt(
  fn: () => unknown,
  opts: { warmup?: number; repeats?: number } = {},
): Promise<TimingStats> {
  const warmup = opts.warmup ?? 1;
  const repeats = opts.repeats ?? 5;
  if (!(Number.isInteger(warmup) && warmup >= 0)) throw new RangeError(`warmup must be an integer >= 0; got ${warmup}`);
  if (!(Number.isInteger(repeats) && repeats >= 1)) throw new RangeError(`repeats must be an integer >= 1; got ${repeats}`);
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  return summarize(samples, { warmup });
}

// ---- results on disk

export interface BenchRecord<T> {
  name: string;
  date: string;
  git: { commit: string; dirty: boolean } | null;
  machine: MachineInfo;
  result: T;
}

/**
 * A row threshold as the records write it, as text: '128', 'never', or, when it differs per matmul,
 * 'qkv 128, o 224, gateUp 32, down 224'.
 */
export function thresholdText(x: number | string | Readonly<Record<string, number | string>>): string {
  return typeof x === 'object' ? Object.entries(x).map(([k, v]) => `${k} ${v}`).join(', ') : String(x);
}

/** The current git commit and whether the tree has changes; null outside a git checkout. */
export function gitState(cwd = process.cwd()): { commit: string; dirty: boolean } | null {
  // a copy without git history (a bundle run elsewhere) names its commit in the environment
  const given = process.env.INFERENCE_LAB_COMMIT;
  if (given && /^[0-9a-f]{40}$/.test(given)) return { commit: given, dirty: false };
  try {
    const run = (args: string[]) =>
      execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const commit = run(['rev-parse', 'HEAD']);
    const dirty = run(['status', '--porcelain', '--untracked-files=no']).length > 0;
    return { commit, dirty };
  } catch {
    return null;
  }
}

/**
 * Write `<dir>/<name>.json` (default dir: data/bench under the working directory) with the
 * machine, git commit, date and result. Returns the path written.
 */
export function writeBenchJson<T>(name: string, result: T, opts: { dir?: string } = {}): string {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`bench name must match [A-Za-z0-9._-]+; got '${name}'`);
  const dir = opts.dir ?? path.join(process.cwd(), 'data', 'bench');
  fs.mkdirSync(dir, { recursive: true });
  const record: BenchRecord<T> = {
    name,
    date: new Date().toISOString(),
    git: gitState(),
    machine: machineInfo(),
    result,
  };
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
  return file;
}

// ---- progress

export interface ProgressBar {
  /** advance by n (default 1), optionally with a short note */
  tick(n?: number, note?: string): void;
  /** finish the line */
  done(note?: string): void;
}

/**
 * A one-line progress bar on stderr. On a terminal it redraws in place; otherwise (CI, pipes)
 * it prints one line when done, so logs stay readable.
 */
export function progressBar(
  total: number,
  label: string,
  opts: { stream?: NodeJS.WriteStream; width?: number } = {},
): ProgressBar {
  const stream = opts.stream ?? process.stderr;
  const width = opts.width ?? 24;
  const tty = Boolean(stream.isTTY);
  const t0 = performance.now();
  let count = 0;
  let finished = false;
  const line = (note?: string) => {
    const frac = total > 0 ? Math.min(1, count / total) : 1;
    const filled = Math.round(frac * width);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${count}/${total} ${secs}s${note ? ` ${note}` : ''}`;
  };
  return {
    tick(n = 1, note) {
      count += n;
      if (tty && !finished) stream.write(`\r${line(note)}\x1b[K`);
    },
    done(note) {
      if (finished) return;
      finished = true;
      stream.write(tty ? `\r${line(note)}\x1b[K\n` : `${line(note)}\n`);
    },
  };
}

/** `--name value` and `--switch` flags of a benchmark's command line (process.argv by default). */
export function benchFlags(argv: readonly string[] = process.argv.slice(2)) {
  /** the value after --name, or undefined when absent; an error when the value is missing */
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
    return v;
  };
  return {
    value,
    /** whether --name is present */
    has(name: string): boolean {
      return argv.includes(`--${name}`);
    },
    /** --no-fma: our wasm kernels without fused multiply-adds (initBackend's wasmFma); undefined = its default, on */
    fma(): false | undefined {
      return argv.includes('--no-fma') ? false : undefined;
    },
    /** --threads N|all: the wasm backend's threads (initBackend's wasmThreads); undefined = its default, every core */
    threads(): number | 'all' | undefined {
      const v = value('threads');
      return v === undefined ? undefined : parseThreadsFlag(v);
    },
  };
}

/**
 * Run a benchmark's main(): on success free the backend and exit 0 (a live Dawn instance or
 * llama.cpp's threads would keep Node running); on failure print the stack and exit 1.
 */
export function runBench(main: () => Promise<void>): void {
  main()
    .then(async () => {
      await shutdownBackend();
      process.exit(0);
    })
    .catch((e: unknown) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : e);
      process.exit(1);
    });
}
