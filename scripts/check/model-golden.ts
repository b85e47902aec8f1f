/**
 * Check the model against the HF oracle (data/golden) on any backend: logits at the prompt's
 * last position and after each of the first 8 greedy tokens (max abs error), and the 64-token
 * greedy continuations (exact), with the contiguous KV cache. Prints one JSON object.
 *
 *   npx tsx scripts/check/model-golden.ts [--backend wasm|webgpu|cpu|tensorflow|auto]
 *        [--models target,draft] [--prompts 0,1,5] [--steps 64] [--json out.json]
 *
 * On the GPU machine (from the project root): bash ../shared/gpu/pack.sh scripts/check/model-golden.ts
 * here, then there: bash .gpu/run.sh node .gpu/bundle/model-golden.mjs --backend webgpu
 */
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';

import { initBackend, shutdownBackend, type BackendPreference } from '../../lib/backend';
import { ContiguousKVCache } from '../../lib/kv/contiguous';
import { loadModel } from '../../lib/model/load';
import { SafetensorsFile } from '../../lib/model/safetensors';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

interface Golden {
  prompts: { name: string; ids: number[] }[];
  models: Record<string, { entries: { name: string; logits_key: string; continuation: number[]; margins: number[] }[] }>;
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

async function main(): Promise<void> {
  const info = await initBackend({ prefer: (flag('backend') ?? 'auto') as BackendPreference });
  const golden: Golden = JSON.parse(fs.readFileSync('data/golden/golden.json', 'utf8'));
  const steps = Number(flag('steps') ?? 64);
  const which = (flag('models') ?? 'target,draft').split(',');
  const prompts = flag('prompts')?.split(',').map(Number) ?? golden.prompts.map((_, i) => i);
  const results: Record<string, unknown> = {};
  for (const name of which) {
    const model = await loadModel(`data/models/${name}`);
    const oracle = SafetensorsFile.open(`data/golden/${name}.logits.safetensors`);
    let maxErr = 0;
    let agreed = 0;
    let total = 0;
    const mismatches: string[] = [];
    const t0 = performance.now();
    for (const p of prompts) {
      const prompt = golden.prompts[p];
      const e = golden.models[name].entries[p];
      const ref = oracle.get(e.logits_key);
      const V = ref.shape[1];
      const cache = new ContiguousKVCache(model.kvShape, 1);
      let logits = model.forward([prompt.ids], cache);
      for (let step = 0; step < steps; step++) {
        const row = (await logits.data()) as Float32Array;
        logits.dispose();
        if (step < ref.shape[0]) {
          for (let i = 0; i < V; i++) maxErr = Math.max(maxErr, Math.abs(row[i] - ref.data[step * V + i]));
        }
        const next = argmax(row);
        total++;
        if (next !== e.continuation[step]) {
          mismatches.push(`${prompt.name} step ${step}: ${next} vs ${e.continuation[step]} (oracle margin ${e.margins[step]})`);
          break;
        }
        agreed++;
        if (step === steps - 1) break;
        logits = model.forward([[next]], cache);
      }
      cache.dispose();
    }
    results[name] = {
      prompts: prompts.length,
      maxAbsLogitError: maxErr,
      greedyTokensAgreed: agreed,
      greedyTokensChecked: total,
      mismatches,
      seconds: (performance.now() - t0) / 1000,
    };
    oracle.close();
    model.dispose();
  }
  const out = { backend: info.name, facts: info.facts, tensorsLeft: tf.memory().numTensors, results };
  const json = JSON.stringify(out, null, 2);
  console.log(json);
  const file = flag('json');
  if (file) fs.writeFileSync(file, json);
  await shutdownBackend();
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
