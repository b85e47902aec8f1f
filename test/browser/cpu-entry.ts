// The wasm backend in a cross-origin isolated page (test/threads.browser.test.ts): tfjs-wasm runs
// its threaded build there, and our CPU kernels start their Web Workers over its shared memory.
// Fetches the draft model and the HF oracle's golden file, decodes one golden prompt greedily on 2
// threads (the fused decode step, every thread inside it; then op by op, XNNPACK on its threads),
// and exposes the result as window.__cpuRun().
import * as tf from '@tensorflow/tfjs-core';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

import { initBackend } from '../../lib/backend';
import { ContiguousKVCache } from '../../lib/kv/contiguous';
import { configFromHF } from '../../lib/model/config';
import { useWasmDecodeStep, wasmDecodeStepAvailable } from '../../lib/model/kernels/wasmDecode';
import { LlamaModel } from '../../lib/model/llama';
import { CpuThreadPool } from '../../lib/model/kernels/threads';
import type { WasmBackendLike } from '../../lib/model/kernels/cpu';
import { fetchDraft } from './fetched';

setWasmPaths('/node_modules/@tensorflow/tfjs-backend-wasm/dist/'); // the .wasm files, served from the repository

async function cpuRun(promptIndex: number, steps: number) {
  const { config, weights, golden } = await fetchDraft();
  const info = await initBackend({ prefer: 'wasm', wasmThreads: 2 });
  const model = LlamaModel.fromWeights(configFromHF(config), weights, 'draft');
  const prompt = golden.prompts[promptIndex].ids;
  const c = model.config;
  const fusedStep = wasmDecodeStepAvailable(c.hiddenSize, c.headDim, c.intermediateSize);
  const greedy = async (fused: boolean) => {
    useWasmDecodeStep(fused);
    const cache = new ContiguousKVCache(model.kvShape, 1);
    const got: number[] = [];
    try {
      let ids = prompt;
      for (let k = 0; k < steps; k++) {
        const logits = model.forward([ids], cache); // [1, 1, V]
        const best = tf.argMax(tf.reshape(logits, [-1]));
        const id = (await best.data())[0];
        tf.dispose([logits, best]);
        got.push(id);
        ids = [id];
      }
    } finally {
      cache.dispose();
      useWasmDecodeStep(true);
    }
    return got;
  };
  const fused = await greedy(true);
  const ops = await greedy(false);
  model.dispose();
  return {
    crossOriginIsolated: globalThis.crossOriginIsolated,
    reason: info.reason,
    threads: info.facts.wasm?.threads ?? 0,
    pool: CpuThreadPool.of(tf.backend() as unknown as WasmBackendLike)?.threads ?? 0,
    fma: info.facts.wasm?.fma ?? 'off',
    fusedStep,
    fused,
    ops,
    want: golden.models.draft.entries[promptIndex].continuation.slice(0, steps),
  };
}

(globalThis as { __cpuRun?: typeof cpuRun }).__cpuRun = cpuRun;
