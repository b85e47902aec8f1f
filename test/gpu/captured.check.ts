// Run by test/gpu.captured.test.ts in a child process with SwiftShader's Vulkan driver on the
// library path (Dawn finds it only at process start). Prints one JSON line: the kernel checks,
// greedy tokens of the captured path against the HF oracle, and the engine on the captured path
// against the eager engine.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import { LLM } from '../../lib/engine/llm';
import { checkKernels } from '../../lib/gpu/checks';
import { sharedGpu, releaseSharedGpu } from '../../lib/gpu/device';
import { contiguousTables } from '../../lib/gpu/llama';
import { loadGpuModel } from '../../lib/gpu/load';
import { loadGoldenFile } from '../../lib/oracle/hf';

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  const ctx = await sharedGpu();
  const out: Record<string, unknown> = { adapter: ctx.info.adapter, software: ctx.info.software };
  out.kernels = await checkKernels(ctx, { cases: 1, seed: 3 });

  // greedy tokens of the draft (fp32 and bf16) on two golden prompts
  const golden = loadGoldenFile();
  const greedy: { format: string; prompt: string; got: number[]; want: number[] }[] = [];
  for (const format of ['f32', 'bf16'] as const) {
    const m = await loadGpuModel(ctx, 'data/models/draft', { format, maxTokens: 64, maxSeqs: 2, blockSize: 16 });
    const prompts = [0, 1].map((i) => golden.prompts[i]);
    const r = await m.greedyGenerate(
      prompts.map((p) => p.ids),
      5,
    );
    prompts.forEach((p, b) => {
      const got = r.tokens[b];
      greedy.push({ format, prompt: p.name, got, want: golden.models.draft.entries[b].continuation.slice(0, got.length) });
    });
    // the same decode as one chained submit (speculative drafting's path): the prompt's last
    // token fed again over the prefilled pool, then 5 steps with the ids kept on the GPU
    const tables = contiguousTables(m, 2);
    const chain = await m.greedyChain(
      prompts.map((p, b) => ({ tokens: p.ids.slice(-1), start: p.ids.length - 1, blockTable: tables[b], logits: 1 })),
      5,
    );
    prompts.forEach((p, b) => greedy.push({ format: `${format} chained`, prompt: p.name, got: chain.ids[b], want: r.tokens[b].slice(0, 5) }));
    // the engine's kind of step (ids read back each step), submitted in parts of 4 dispatches,
    // every matmul on the decode tile, then on the shared-memory tile
    m.submitEvery = 4;
    for (const [tile, sharedFrom] of [
      ['decode', Infinity],
      ['shared', 1],
    ] as const) {
      m.sharedFrom = sharedFrom;
      m.headSharedFrom = sharedFrom;
      let step = await m.step(prompts.map((p, b) => ({ tokens: p.ids, start: 0, blockTable: tables[b], logits: 1 })));
      const parts: number[][] = prompts.map((_, b) => [step.ids[b]]);
      for (let k = 0; k < 4; k++) {
        step = await m.step(prompts.map((p, b) => ({ tokens: [step.ids[b]], start: p.ids.length + k, blockTable: tables[b], logits: 1 })));
        parts.forEach((t, b) => t.push(step.ids[b]));
      }
      prompts.forEach((p, b) => greedy.push({ format: `${format} submitted in parts, ${tile} tile`, prompt: p.name, got: parts[b], want: r.tokens[b].slice(0, 5) }));
    }
    out.dispatchesPerStep = m.stats.dispatchesPerStep;
    m.dispose();
  }
  out.greedy = greedy;

  // the engine: captured vs eager, same greedy text (paged KV, continuous batching, prefix cache)
  const prompts = ['In the beginning', 'And God said', 'In the beginning God'];
  const run = async (captured: boolean, speculative = false, only?: string[]) => {
    const llm = await LLM.load({
      model: 'data/models/draft',
      captured,
      maxNumSeqs: 4,
      maxNumBatchedTokens: 64,
      numBlocks: 64,
      blockSize: 8,
      speculative: speculative ? { draft: 'data/models/draft', gamma: 2 } : null,
    });
    try {
      const outs = await llm.generate(only ?? prompts, { temperature: 0, maxTokens: 6, ignoreEos: true });
      return outs.map((o) => o.outputs[0].tokenIds);
    } finally {
      llm.dispose();
    }
  };
  // (and one request alone: a speculative step of one row copies its drafts in one go)
  out.engine = { eager: await run(false), captured: await run(true), capturedSpeculative: await run(true, true), capturedSpeculativeOne: await run(true, true, prompts.slice(0, 1)) };
  // overlapped steps (LLMEngine.step, overlapSteps): the same tokens as one step at a time and as
  // the eager engine, with a stop token mid-run (one pick dropped), mixed maxTokens, a pool small
  // enough to preempt, and a sampled request among greedy ones (steps then run one at a time)
  const many = ['In the beginning', 'And God said', 'In the beginning God', 'Blessed are', 'And the earth'];
  const probe = await run(false, false, many.slice(2, 3));
  const stopToken = probe[0][2]; // the third token of that prompt's greedy output
  const paramsFor = (sampled: boolean) =>
    many.map((_, i) =>
      sampled && i === 3
        ? { temperature: 0.8, seed: 5, maxTokens: 6, ignoreEos: true }
        : { temperature: 0, maxTokens: [7, 3, 9, 5, 8][i], ignoreEos: true, ...(i === 2 ? { stopTokenIds: [stopToken] } : {}) },
    );
  const overlapRun = async (captured: boolean, overlapSteps: boolean, sampled = false) => {
    const llm = await LLM.load({ model: 'data/models/draft', captured, overlapSteps, maxNumSeqs: 4, maxNumBatchedTokens: 16, numBlocks: 6, blockSize: 4 });
    try {
      const outs = await llm.generate(many, paramsFor(sampled));
      return {
        tokens: outs.map((o) => o.outputs[0].tokenIds),
        finishReasons: outs.map((o) => o.outputs[0].finishReason),
        overlapped: llm.engine.numOverlappedSteps,
        preemptions: llm.engine.steps.reduce((a, st) => a + st.preempted.length, 0),
      };
    } finally {
      llm.dispose();
    }
  };
  out.overlap = {
    eager: await overlapRun(false, false),
    captured: await overlapRun(true, false),
    overlapped: await overlapRun(true, true),
    sampledOneByOne: await overlapRun(true, false, true),
    sampledOverlapped: await overlapRun(true, true, true),
  };
  out.errors = ctx.errors;
  await releaseSharedGpu();
  console.log('RESULT ' + JSON.stringify(out));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
