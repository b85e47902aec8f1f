// The lesson runner's prerequisites: Debian's Jupyter (nbconvert, nbclient, ipykernel) and the
// tslab kernel. tslab lives in tools/tslab (its own package: it brings a TypeScript 5.0 fork whose
// `tsc` would shadow the project's in node_modules/.bin), and its kernelspec is installed into
// build/jupyter, which the runner passes to Jupyter as JUPYTER_PATH: nothing global is touched.
// plotly.min.js is copied into notebooks/ (ignored by git), where the Jupyter server serves it to the charts.

import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { copyPlotlyJs } from '../../lib/viz/display';

export const ROOT = path.resolve(__dirname, '..', '..');
export const TSLAB_DIR = path.join(ROOT, 'tools', 'tslab');
export const TSLAB_BIN = path.join(TSLAB_DIR, 'node_modules', '.bin', 'tslab');
export const JUPYTER_PREFIX = path.join(ROOT, 'build', 'jupyter');
export const JUPYTER_PATH = path.join(JUPYTER_PREFIX, 'share', 'jupyter');
export const KERNEL_NAME = 'tslab';

export const DEBIAN_PACKAGES = ['jupyter-notebook', 'python3-nbconvert', 'python3-nbclient', 'python3-ipykernel'];
export const INSTALL_HINT = [
  'The lessons run through Jupyter (nbconvert) with the tslab TypeScript kernel.',
  'On Debian/Ubuntu install Jupyter with:',
  '',
  `    sudo apt-get install -y --no-install-recommends ${DEBIAN_PACKAGES.join(' ')}`,
  '',
  'Elsewhere: `pip install nbconvert nbclient ipykernel jupyter_client` into some Python 3 and point',
  'LESSONS_PYTHON at it (e.g. LESSONS_PYTHON=$HOME/venv/bin/python npm start).',
  'The tslab kernel itself is installed by this script (tools/tslab, npm).',
].join('\n');

/** A problem the user can fix: printed as a message, not a stack trace. */
export class SetupError extends Error {}

/** The Python that has Jupyter: LESSONS_PYTHON, else Debian's /usr/bin/python3, else python3 on PATH. */
export function findPython(env: NodeJS.ProcessEnv = process.env): string {
  const candidates = env.LESSONS_PYTHON ? [env.LESSONS_PYTHON] : ['/usr/bin/python3', 'python3'];
  const tried: string[] = [];
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import nbconvert, nbclient, ipykernel, jupyter_client; print(nbconvert.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return py;
    tried.push(`${py}: ${r.error ? 'not found' : (r.stderr.trim().split('\n').pop() ?? 'failed')}`);
  }
  throw new SetupError(`Jupyter was not found (${tried.join('; ')}).\n\n${INSTALL_HINT}`);
}

/** Install tools/tslab's node_modules if missing (npm ci from its lock file). */
export function ensureTslab(log: (s: string) => void = console.log): void {
  if (fs.existsSync(TSLAB_BIN)) return;
  log('installing the tslab kernel (npm ci in tools/tslab)...');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: TSLAB_DIR, stdio: 'inherit' });
  if (r.status !== 0 || !fs.existsSync(TSLAB_BIN)) {
    throw new SetupError(`could not install tslab (npm ci in ${path.relative(ROOT, TSLAB_DIR)} failed); run it by hand to see why.`);
  }
}

/** Register the tslab kernelspec under build/jupyter (idempotent). */
export function ensureKernel(python: string, log: (s: string) => void = console.log): void {
  ensureTslab(log);
  const spec = path.join(JUPYTER_PATH, 'kernels', KERNEL_NAME, 'kernel.json');
  if (fs.existsSync(spec)) {
    const argv = (JSON.parse(fs.readFileSync(spec, 'utf8')) as { argv: string[] }).argv;
    if (argv[0] === TSLAB_BIN) return;
  }
  log(`registering the tslab kernel in ${path.relative(ROOT, JUPYTER_PATH)}`);
  try {
    execFileSync(TSLAB_BIN, ['install', `--python=${python}`, `--prefix=${JUPYTER_PREFIX}`, `--binary=${TSLAB_BIN}`], { stdio: 'pipe' });
  } catch (e) {
    const err = e as { stderr?: Buffer; stdout?: Buffer };
    throw new SetupError(`tslab install failed:\n${String(err.stderr ?? '')}${String(err.stdout ?? '')}\n${INSTALL_HINT}`);
  }
  if (!fs.existsSync(spec)) throw new SetupError(`tslab install did not write ${spec}`);
}

/** Everything needed to execute notebooks: the Python with Jupyter and the env that finds our kernel. */
export function setupJupyter(log: (s: string) => void = console.log): { python: string; env: NodeJS.ProcessEnv } {
  const python = findPython();
  ensureKernel(python, log);
  copyPlotlyJs(path.join(ROOT, 'notebooks')); // the charts load it from beside the notebook (lib/viz/display.ts)
  const env = { ...process.env, JUPYTER_PATH: [JUPYTER_PATH, process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter), PYDEVD_DISABLE_FILE_VALIDATION: '1' };
  return { python, env };
}

if (require.main === module) {
  try {
    const { python } = setupJupyter();
    console.log(`ready: ${python} with the tslab kernel (JUPYTER_PATH=${JUPYTER_PATH})`);
  } catch (e) {
    if (e instanceof SetupError) {
      console.error(e.message);
      process.exit(1);
    }
    throw e;
  }
}
