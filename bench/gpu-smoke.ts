/**
 * GPU smoke test: initialise WebGPU (or the backend named by --backend), measure the memory and
 * compute roofs, print one JSON object on stdout.
 *
 *   here:             npx tsx bench/gpu-smoke.ts --backend wasm
 *   GPU machine:      bash ../shared/gpu/pack.sh bench/gpu-smoke.ts   (from the project root)
 *                     bash .gpu/run.sh node .gpu/bundle/gpu-smoke.mjs [--backend webgpu] [--json out.json]
 *
 * Flags: --backend auto|webgpu|wasm|tensorflow|cpu (default webgpu), --bytes N (GEMV matrix
 * bytes), --n N (square matmul size), --json PATH (also write the JSON there).
 */
import * as fs from 'node:fs';
import { initBackend, shutdownBackend, type BackendPreference } from '../lib/backend';
import { machineInfo } from '../lib/bench/harness';
import { measureBandwidth, measureMatmulFlops } from '../lib/roofline';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function optionalNumber(name: string): number | undefined {
  const v = flag(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(Number.isFinite(n) && n > 0)) throw new Error(`--${name} must be a positive number; got '${v}'`);
  return n;
}

async function main(): Promise<void> {
  const prefer = (flag('backend') ?? 'webgpu') as BackendPreference;
  const info = await initBackend({ prefer, log: true });
  const bandwidth = await measureBandwidth({ bytes: optionalNumber('bytes') });
  const sum = await measureBandwidth({ bytes: optionalNumber('bytes'), kernel: 'sum' });
  const matmul = await measureMatmulFlops({ n: optionalNumber('n') });
  const out = {
    backend: { name: info.name, reason: info.reason, skipped: info.skipped },
    machine: machineInfo(),
    bandwidth: { kernel: bandwidth.kernel, bytes: bandwidth.bytes, bestGBps: bandwidth.bestGBps, medianGBps: bandwidth.medianGBps, medianMs: bandwidth.timing.medianMs },
    sum: { kernel: sum.kernel, bytes: sum.bytes, bestGBps: sum.bestGBps, medianGBps: sum.medianGBps, medianMs: sum.timing.medianMs },
    matmul: { n: matmul.n, bestGflops: matmul.bestGflops, medianGflops: matmul.medianGflops, medianMs: matmul.timing.medianMs },
  };
  const text = JSON.stringify(out, null, 2);
  console.log(text);
  const json = flag('json');
  if (json) fs.writeFileSync(json, text + '\n');
}

main()
  .then(async () => {
    await shutdownBackend();
    process.exit(0); // a live Dawn instance would keep Node running
  })
  .catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
