// The HF-oracle check on any backend (the tests run it on wasm): logits error and greedy agreement
// for the target and the draft, written to data/bench/oracle-<backend>.json.
//
//   npx tsx bench/oracle.ts [--backend webgpu] [--out DIR] [--compare full|top50]
// --compare top50 checks against golden.json alone (when the logits files are not at hand).
// On the GPU machine: bash ../shared/gpu/pack.sh bench/oracle.ts, then
//   bash .gpu/run.sh node .gpu/bundle/oracle.mjs --backend webgpu --out $OUT
import { parseArgs } from 'node:util';

import { initBackend, type BackendPreference } from '../lib/backend';
import { writeBenchJson, runBench } from '../lib/bench/harness';
import { loadModel } from '../lib/model/load';
import { checkAgainstOracle, type OracleReport } from '../lib/oracle/hf';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { backend: { type: 'string', default: 'auto' }, out: { type: 'string' }, compare: { type: 'string', default: 'full' } } });
  const backend = await initBackend({ prefer: values.backend as BackendPreference });
  console.error(`backend: ${backend.name} (${backend.reason})`);
  const reports: OracleReport[] = [];
  for (const which of ['target', 'draft'] as const) {
    const model = await loadModel(`data/models/${which}`);
    const t0 = performance.now();
    if (values.compare !== 'full' && values.compare !== 'top50') throw new Error(`--compare must be full or top50, got ${values.compare}`);
    const r = await checkAgainstOracle(model, which, { compare: values.compare });
    model.dispose();
    reports.push(r);
    console.log(
      `${which} on ${backend.name}: max |logit - oracle| ${r.maxAbsError.toExponential(2)} (${r.worstAt}), ` +
        `greedy ${r.tokensAgreeing}/${r.tokens} tokens, ties ${r.ties.length}, failures ${r.failures.length} ` +
        `(${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
  }
  const file = writeBenchJson(`oracle-${backend.name}`, { backend: backend.facts, reports }, { dir: values.out });
  console.log(`wrote ${file}`);
}

runBench(main);
