// npm run notebook: open the lessons in Jupyter (Debian's classic Notebook, from scripts/setup.sh)
// with the tslab kernel registered (build/jupyter), bound to 127.0.0.1, as root or not, and print
// the address to open. plotly.min.js is copied beside the notebooks, where the server serves it to
// the charts (see lib/viz/display.ts).
//
//   tsx scripts/lessons/notebook.ts [--dir notebooks] [--port 8888] [-- extra jupyter arguments]

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { copyPlotlyJs } from '../../lib/viz/display';
import { ROOT, SetupError, setupJupyter } from './setup';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** The arguments for `python -m notebook`: loopback only, no browser, --allow-root when root. */
export function notebookArgs(dir: string, port: number, isRoot: boolean, extra: readonly string[] = []): string[] {
  return [
    '-m', 'notebook', '--no-browser', '--ip=127.0.0.1', `--port=${port}`, `--notebook-dir=${dir}`,
    ...(isRoot ? ['--allow-root'] : []),
    ...extra,
  ];
}

/** The first "http://127.0.0.1:PORT/...?token=..." address in Jupyter's log, if any. */
export function findAddress(log: string): string | null {
  const m = /(http:\/\/127\.0\.0\.1:\d+\/\S*)/.exec(log);
  return m ? m[1] : null;
}

function main(): void {
  const dir = path.resolve(arg('dir') ?? path.join(ROOT, 'notebooks'));
  const port = Number(arg('port') ?? 8888);
  const dash = process.argv.indexOf('--');
  const extra = dash >= 0 ? process.argv.slice(dash + 1) : [];
  const { python, env } = setupJupyter();
  const r = spawnSync(python, ['-c', 'import notebook'], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new SetupError(`${python} has no Jupyter Notebook (import notebook failed). On Debian/Ubuntu: sudo apt-get install -y jupyter-notebook`);
  }
  if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) console.warn('notebook: dist/ is missing, so `inference-lab` imports will fail: run `npm run build` first.');
  if (!copyPlotlyJs(dir)) console.warn(`notebook: could not copy plotly.min.js into ${dir}: charts will say where they looked for it.`);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const child = spawn(python, notebookArgs(dir, port, isRoot, extra), { env, cwd: dir, stdio: ['inherit', 'pipe', 'pipe'] });
  let log = '';
  let printed = false;
  const watch = (stream: NodeJS.WriteStream) => (d: Buffer) => {
    stream.write(d);
    if (printed) return;
    log += d.toString();
    const address = findAddress(log);
    if (address) {
      printed = true;
      console.log(`\nnotebook: the lessons are at ${address}\n(Ctrl-C stops the server)\n`);
    }
  };
  child.stdout.on('data', watch(process.stdout));
  child.stderr.on('data', watch(process.stderr));
  // one Ctrl-C stops it (the Notebook alone would ask to confirm), and so does a kill of this process
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill('SIGTERM'));
  child.on('close', (code) => process.exit(code ?? 1));
}

if (require.main === module) {
  try {
    main();
  } catch (e) {
    if (e instanceof SetupError) {
      console.error(e.message);
      process.exit(1);
    }
    throw e;
  }
}
