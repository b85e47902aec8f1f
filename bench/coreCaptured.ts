// bench:core's captured section (webgpu only): the same batch-1 decode as the eager rows, on the
// captured step (lib/gpu, lesson 2), against the same roofline: predicted tok/s = bandwidth /
// (weight bytes + KV bytes x mean context) per token, with the bandwidth bench:core measured.
import { percentile } from '../lib/eval/stats';
import { sharedGpu } from '../lib/gpu/device';
import { loadGpuModel } from '../lib/gpu/load';
import type { WeightFormat } from '../lib/gpu/kernels';
import { bytesPerDecodedToken, predictDecodeTokensPerSecond } from '../lib/bench/roofline';
import { llamaSizes } from '../lib/model/config';

export interface CapturedCoreRow {
  model: string;
  weights: WeightFormat;
  promptTokens: number;
  generatedTokens: number;
  dispatchesPerStep: number;
  stepMsMedian: number;
  encodeMsMedian: number;
  measuredTokS: number;
  bytesPerToken: number;
  predictedTokS: number;
  fractionOfRoofline: number;
  achievedGBps: number;
}

/** Batch-1 greedy decode of each model on the captured path, fp32 and bf16 weights. */
export async function capturedCore(models: readonly { name: string; dir: string }[], prompt: readonly number[], steps: number, bandwidthGBps: number): Promise<CapturedCoreRow[]> {
  const ctx = await sharedGpu();
  const rows: CapturedCoreRow[] = [];
  for (const { name, dir } of models) {
    for (const format of ['f32', 'bf16'] as const) {
      const m = await loadGpuModel(ctx, dir, { format, maxTokens: Math.max(64, prompt.length), maxSeqs: 1 });
      try {
        await m.greedyGenerate([prompt], 8); // warm-up
        const r = await m.greedyGenerate([prompt], steps);
        const stepMs = percentile(r.stepMs.slice(1), 50); // the first step waits for nothing before it
        const sizes = llamaSizes(m.config);
        const traffic = { weightBytes: m.stats.weightBytes, kvBytesPerToken: sizes.kvBytesPerToken, contextLength: prompt.length + steps / 2 };
        const bytesPerToken = bytesPerDecodedToken(traffic);
        const predictedTokS = predictDecodeTokensPerSecond({ ...traffic, bandwidthGBps });
        const measuredTokS = 1000 / stepMs;
        rows.push({
          model: name,
          weights: format,
          promptTokens: prompt.length,
          generatedTokens: steps,
          dispatchesPerStep: m.stats.dispatchesPerStep,
          stepMsMedian: stepMs,
          encodeMsMedian: percentile(r.encodeMs, 50),
          measuredTokS,
          bytesPerToken,
          predictedTokS,
          fractionOfRoofline: measuredTokS / predictedTokS,
          achievedGBps: (bytesPerToken * measuredTokS) / 1e9,
        });
      } finally {
        m.dispose();
      }
    }
  }
  return rows;
}
