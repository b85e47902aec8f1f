/**
 * KV-cache optimizations benchmark (issue 4; lesson 3 "KV-cache optimizations"). Not a test: it
 * prints figures and writes JSON for the charts, and asserts no timing.
 *
 *   1. quantized caches, every scheme (naive per-tensor included): bits per element, bytes held
 *      (tf.memory) and theoretical at the end of a full 1024-token window, compression vs float32,
 *      test-split perplexity rise, next-token KL and top-1 agreement vs float32 (teacher-forced,
 *      chunked: see lib/eval/quality.ts), greedy agreement over 64-token continuations, decode
 *      tokens/s (dequantize-on-read cost), per-layer attention error of the main schemes
 *   2. per-layer budgets: attention entropy per layer on the validation split; perplexity vs
 *      memory for uniform vs entropy-proportional budgets, H2O and streaming eviction
 *
 *   npm run bench:kv [-- --full] [-- --windows N] [-- --prompts N] [-- --out PATH] [-- --threads N|all]
 *
 * QUICK (default): 2 windows of the test split for perplexity, 4 prompts of 256 test-split tokens
 * for greedy and speed, 1 window for budgets. FULL: the whole test split (slow: ~2 s per cache per
 * window on one wasm thread).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { initBackend } from '../lib/backend';
import { writeBenchJson, benchFlags, runBench } from '../lib/bench/harness';
import { attentionEntropy, attentionError } from '../lib/eval/attention';
import { compareTeacherForced, greedyAgreement, type CacheFactory } from '../lib/eval/quality';
import { proportionalBudgets, uniformBudgets } from '../lib/kv/budget';
import { EvictingKVCache } from '../lib/kv/evicting';
import { KV_QUANT_PRESETS, QuantizedKVCache, bitsPerElement, quantizedKVName, resolveQuantizedKVConfig } from '../lib/kv/quantized';
import { loadModel } from '../lib/model/load';
import { loadTokenizer } from '../lib/generate/tokenizer';

const argv = process.argv.slice(2);
const flags = benchFlags(argv);
const flag = flags.value;
const full = argv.includes('--full');
const WINDOWS = Number(flag('windows') ?? (full ? 1e9 : 2));
const PROMPTS = Number(flag('prompts') ?? (full ? 16 : 4));
const BUDGET_WINDOWS = full ? 4 : 1;
const OUT = flag('out') ?? path.join('data', 'bench', 'kv.json');
const outName = path.basename(OUT, '.json');
const MODEL = 'data/models/target';

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
const r4 = (x: number) => Math.round(x * 1e4) / 1e4;

async function main() {
  const backend = await initBackend({ prefer: 'wasm', wasmThreads: flags.threads(), wasmFma: flags.fma() });
  const model = await loadModel(MODEL);
  const tokenizer = await loadTokenizer(MODEL);
  const test = tokenizer.encode(fs.readFileSync('data/corpus/test.txt', 'utf8'));
  const val = tokenizer.encode(fs.readFileSync('data/corpus/validation.txt', 'utf8'));
  const D = model.config.headDim;
  const t0 = Date.now();
  console.error(
    `backend ${backend.name}; ${full ? 'FULL' : 'QUICK'}: ${Math.min(WINDOWS, Math.ceil(test.length / 1024))} windows, ${PROMPTS} prompts`,
  );

  // ---- 1. quantized caches
  const factories: Record<string, CacheFactory> = {};
  for (const [name, cfg] of Object.entries(KV_QUANT_PRESETS)) factories[name] = (s, b) => new QuantizedKVCache(s, b, cfg);
  const tf1 = compareTeacherForced(model, test, factories, {
    maxWindows: WINDOWS,
    onWindow: (d, n) => console.error(`  teacher-forced window ${d}/${n} (${((Date.now() - t0) / 1000).toFixed(0)} s)`),
  });
  const prompts = Array.from({ length: PROMPTS }, (_, i) => test.slice(20000 + i * 2000, 20000 + i * 2000 + 256));
  let reference: number[][] | undefined;
  let refTps = NaN;
  const rows = [];
  for (const [name, cfg] of Object.entries(KV_QUANT_PRESETS)) {
    const g = await greedyAgreement({ model }, prompts, factories[name], { maxTokens: 64, reference });
    if (!reference) {
      reference = g.referenceTokens;
      refTps = g.referenceTokensPerSecond;
    }
    const r = tf1.results[name];
    const c = resolveQuantizedKVConfig(cfg, D);
    rows.push({
      name,
      scheme: quantizedKVName(c),
      bitsPerElement: r4((bitsPerElement(c.key) + bitsPerElement(c.value)) / 2),
      bytes: r.bytes,
      theoreticalBytes: r.theoreticalBytes,
      compression: r4(tf1.reference.bytes / r.bytes),
      compressionTheoretical: r4(tf1.reference.bytes / (r.theoreticalBytes ?? r.bytes)),
      ppl: r4(r.ppl),
      pplRise: r4(r.ppl / tf1.reference.ppl - 1),
      kl: r.kl,
      top1Agreement: r4(r.top1Agreement),
      greedyPositionAgreement: r4(g.positionAgreement),
      greedyPrefixAgreement: r4(g.prefixAgreement),
      greedyIdentical: `${g.identical}/${g.prompts}`,
      decodeTokensPerSecond: Math.round(g.decodeTokensPerSecond * 10) / 10,
    });
    console.error(`  greedy ${name} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
  console.log(
    `\nfloat32 cache: ${tf1.reference.bytes} bytes per 1024-token window, test ppl ${tf1.reference.ppl.toFixed(3)} over ${tf1.reference.tokens} tokens, decode ${refTps.toFixed(1)} tok/s`,
  );
  console.log(
    '| cache | bits/elt | bytes (tf.memory) | theoretical | x fewer | ppl | rise | KL | top-1 | greedy pos | greedy identical | tok/s |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.bitsPerElement} | ${r.bytes} | ${r.theoreticalBytes} | ${r.compression.toFixed(2)} | ${r.ppl.toFixed(3)} | ${pct(r.pplRise)} | ${r.kl.toExponential(2)} | ${pct(r.top1Agreement)} | ${pct(r.greedyPositionAgreement)} | ${r.greedyIdentical} | ${r.decodeTokensPerSecond} |`,
    );
  }
  const attn: Record<string, number[][]> = {};
  for (const name of ['int4-tensor', 'int4-token', 'int4-kivi-t64', 'int8-token']) {
    attn[name] = attentionError(model, test.slice(0, 256), factories[name]).map((hs) => hs.map(r4));
  }
  console.log('\nattention error (mean total variation per query row), per layer (mean over heads):');
  for (const [name, e] of Object.entries(attn))
    console.log(`  ${name.padEnd(16)} ${e.map((hs) => (hs.reduce((a, b) => a + b, 0) / hs.length).toFixed(4)).join(' ')}`);

  // ---- 2. per-layer budgets
  const ent = attentionEntropy(model, val, { window: 512, windows: 2 });
  console.log(`\nattention entropy per layer (validation, nats): ${ent.layers.map((x) => x.toFixed(2)).join(' ')}`);
  const L = model.config.numLayers;
  const sinks = 4;
  const recent = 16;
  const chunk = 16;
  const minBudget = sinks + recent + chunk + 1;
  const budgetFactories: Record<string, CacheFactory> = {};
  const budgetRows: { perLayer: number; allocation: string; policy: string; budgets: number[] }[] = [];
  for (const perLayer of [48, 96, 192, 384]) {
    const total = perLayer * L;
    for (const allocation of ['uniform', 'entropy']) {
      const budgets = allocation === 'uniform' ? uniformBudgets(total, L) : proportionalBudgets(ent.layers, total, minBudget);
      for (const policy of ['h2o', 'streaming'] as const) {
        const name = `${allocation}-${perLayer}-${policy}`;
        budgetFactories[name] = (s, b) => new EvictingKVCache(s, b, { budgets, sinks, recent, policy });
        budgetRows.push({ perLayer, allocation, policy, budgets });
      }
    }
  }
  const tf2 = compareTeacherForced(model, test, budgetFactories, {
    maxWindows: BUDGET_WINDOWS,
    chunk,
    onWindow: (d, n) => console.error(`  budget window ${d}/${n} (${((Date.now() - t0) / 1000).toFixed(0)} s)`),
  });
  console.log(
    `\nbudgets (sinks ${sinks}, recent ${recent}, chunks of ${chunk}); float32 full cache ppl ${tf2.reference.ppl.toFixed(3)} at ${tf2.reference.bytes} bytes`,
  );
  console.log('| tokens/layer (of 1024) | allocation | policy | bytes | ppl | rise | KL |');
  console.log('|---:|---|---|---:|---:|---:|---:|');
  const budgetOut = budgetRows.map((b) => {
    const r = tf2.results[`${b.allocation}-${b.perLayer}-${b.policy}`];
    console.log(
      `| ${b.perLayer} | ${b.allocation} | ${b.policy} | ${r.bytes} | ${r.ppl.toFixed(3)} | ${pct(r.ppl / tf2.reference.ppl - 1)} | ${r.kl.toExponential(2)} |`,
    );
    return { ...b, bytes: r.bytes, ppl: r4(r.ppl), pplRise: r4(r.ppl / tf2.reference.ppl - 1), kl: r.kl };
  });

  writeBenchJson(
    outName,
    {
      bench: 'kv',
      mode: full ? 'full' : 'quick',
      model: MODEL,
      quantized: {
        protocol:
          'teacher-forced, non-overlapping 1024-token windows, chunks of 128, lockstep with the float32 cache; greedy: 64 tokens after 256-token test-split prompts',
        windows: Math.min(WINDOWS, Math.ceil(test.length / 1024)),
        reference: { ...tf1.reference, decodeTokensPerSecond: refTps },
        rows,
        attentionError: attn,
      },
      budgets: { entropy: ent, sinks, recent, chunk, windows: BUDGET_WINDOWS, reference: tf2.reference, rows: budgetOut },
      seconds: (Date.now() - t0) / 1000,
    },
    { dir: path.dirname(OUT) },
  );
  console.error(`wrote ${OUT} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  model.dispose();
}

runBench(main);
