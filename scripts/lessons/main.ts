// npm run lessons / npm start: execute every notebook in notebooks/ through Jupyter with the tslab
// kernel (LESSONS_MODE=QUICK by default, FULL for the long runs), then the worked solutions in
// notebooks/solutions/ (folded under each exercise on the lesson pages), then render the site into
// build/site (ignored by git). `--render-only` renders the notebooks already executed in
// build/lessons without running them again; `npm run site:publish` does that into the committed
// site/ (--out site).
//
//   tsx scripts/lessons/main.ts [--only 01,02] [--render-only] [--out build/site] [--build build/lessons]

import * as fs from 'node:fs';
import * as path from 'node:path';

import { gitState } from '../../lib/bench/harness';
import { initBackend, lessonMode, machineInfo, shutdownBackend, type MachineInfo } from '../../lib';
import { executeNotebook, type ExecResult } from './execute';
import { lessonTitle, readNotebook, renderSite, type Lesson } from './render';
import { ROOT, SetupError, setupJupyter } from './setup';

interface RunRecord {
  mode: string;
  date: string;
  commit: string | null;
  machine: MachineInfo;
  seconds: Record<string, number>;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

export function listNotebooks(only?: string): string[] {
  return notebooksIn(path.join(ROOT, 'notebooks'), only);
}

/**
 * The worked solutions, notebooks/solutions/NN-*.ipynb (not lessons: they are executed after the
 * lessons and folded into the lesson pages, under each exercise).
 */
export function listSolutions(only?: string): string[] {
  return notebooksIn(path.join(ROOT, 'notebooks', 'solutions'), only);
}

// the .ipynb files of a folder, sorted; `only` keeps those whose names start with one of its
// comma-separated prefixes
function notebooksIn(dir: string, only?: string): string[] {
  const all = fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => f.endsWith('.ipynb'))
        .sort()
    : [];
  const wanted = only ? only.split(',').map((s) => s.trim()) : null;
  return all.filter((f) => !wanted || wanted.some((w) => f.startsWith(w))).map((f) => path.join(dir, f));
}

async function main(): Promise<number> {
  const outDir = path.resolve(arg('out') ?? path.join(ROOT, 'build', 'site'));
  const buildDir = path.resolve(arg('build') ?? path.join(ROOT, 'build', 'lessons'));
  const renderOnly = process.argv.includes('--render-only');
  const notebooks = listNotebooks(arg('only'));
  const solutions = listSolutions(arg('only'));
  const solutionsDir = path.join(buildDir, 'solutions');
  if (notebooks.length === 0) {
    console.error('no notebooks found in notebooks/');
    return 1;
  }
  if (!renderOnly && !fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) {
    console.error('dist/ is missing: run `npm run build` first (npm run lessons does it for you).');
    return 1;
  }
  const runFile = path.join(buildDir, 'run.json');
  let run: RunRecord;
  if (!renderOnly) {
    const mode = lessonMode();
    const { python, env } = setupJupyter();
    await initBackend();
    const machine = machineInfo();
    await shutdownBackend();
    console.log(`running ${notebooks.length} lesson(s), mode ${mode} (LESSONS_MODE=FULL for the long runs), with ${python} + tslab`);
    run = {
      mode,
      date: new Date().toISOString().slice(0, 16).replace('T', ' '),
      commit: gitState(ROOT)?.commit ?? null,
      machine,
      seconds: {},
    };
    const failures: ExecResult[] = [];
    for (const [i, nb] of notebooks.entries()) {
      const name = path.basename(nb, '.ipynb');
      process.stdout.write(`[${i + 1}/${notebooks.length}] ${name} ...`);
      const r = await executeNotebook(nb, buildDir, {
        python,
        env: { ...env, LESSONS_MODE: mode },
        onTick: () => process.stdout.write('.'),
      });
      console.log(r.ok ? ` ${r.seconds.toFixed(0)} s` : ` FAILED after ${r.seconds.toFixed(0)} s`);
      if (!r.ok) {
        console.error(r.error);
        failures.push(r);
      } else run.seconds[name] = r.seconds;
    }
    // the solutions, each asserting its own checks (progress goes to the build folder, not the learner's file)
    for (const [i, nb] of solutions.entries()) {
      const name = `solutions/${path.basename(nb, '.ipynb')}`;
      process.stdout.write(`[${i + 1}/${solutions.length}] ${name} ...`);
      const r = await executeNotebook(nb, solutionsDir, {
        python,
        env: { ...env, LESSONS_MODE: mode, INFERENCE_LAB_PROGRESS: path.join(solutionsDir, 'progress.json') },
        onTick: () => process.stdout.write('.'),
      });
      console.log(r.ok ? ` ${r.seconds.toFixed(0)} s` : ` FAILED after ${r.seconds.toFixed(0)} s`);
      if (!r.ok) {
        console.error(r.error);
        failures.push(r);
      } else run.seconds[name] = r.seconds;
    }
    fs.mkdirSync(buildDir, { recursive: true });
    fs.writeFileSync(runFile, JSON.stringify(run, null, 2) + '\n');
    if (failures.length) {
      console.error(
        `\n${failures.length} lesson(s) failed: ${failures.map((f) => path.basename(f.notebook)).join(', ')}; the site was not rebuilt.`,
      );
      return 1;
    }
  } else {
    if (!fs.existsSync(runFile)) {
      console.error(`${path.relative(ROOT, runFile)} is missing: run the lessons first (npm run lessons).`);
      return 1;
    }
    run = JSON.parse(fs.readFileSync(runFile, 'utf8')) as RunRecord;
  }
  const lessons: Lesson[] = notebooks
    .map((nb) => path.join(buildDir, path.basename(nb)))
    .filter((f) => fs.existsSync(f))
    .map((f) => {
      const slug = path.basename(f, '.ipynb');
      const notebook = readNotebook(f);
      const sol = path.join(solutionsDir, path.basename(f));
      const solutionsNb = fs.existsSync(sol) ? readNotebook(sol) : undefined;
      return { slug, title: lessonTitle(notebook, slug), notebook, seconds: run.seconds[slug], ...(solutionsNb ? { solutions: solutionsNb } : {}) };
    });
  await renderSite(lessons, outDir, { machine: run.machine, mode: run.mode, date: run.date, commit: run.commit });
  console.log(`\nlessons rendered: open file://${path.join(outDir, 'index.html')}`);
  console.log(`executed notebooks (open them in Jupyter): ${path.relative(ROOT, buildDir)}/`);
  return 0;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof SetupError) {
        console.error(`\n${e.message}`);
        process.exit(1);
      }
      console.error(e);
      process.exit(1);
    },
  );
}
