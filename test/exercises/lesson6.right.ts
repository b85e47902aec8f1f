// Correct answers to lesson 6's build-it exercises (the same code as notebooks/solutions/06-*.ipynb).
import type { Hardware, LlamaConfig, StepCostInput } from '../../lib';
import type { StepSizes } from '../../lib/exercises/lesson6';

export function requestKvBytes(config: LlamaConfig, bytesPerValue: number, promptTokens: number, outputTokens: number, blockSize: number, m: { heads?: boolean; noTwo?: boolean; allTokens?: boolean; noBlocks?: boolean } = {}): number {
  const perToken = (m.noTwo ? 1 : 2) * config.numLayers * (m.heads ? config.numHeads : config.numKvHeads) * config.headDim * bytesPerValue;
  const stored = promptTokens + outputTokens - (m.allTokens ? 0 : 1);
  return (m.noBlocks ? stored : Math.ceil(stored / blockSize) * blockSize) * perToken;
}

export function stepMs(hw: Hardware, z: StepSizes, s: StepCostInput, m: { sum?: boolean; noEff?: boolean; noKv?: boolean; noOverhead?: boolean } = {}): number {
  if (s.numScheduledTokens <= 0) return 0;
  const seqs = Math.max(1, s.numSeqs);
  const flops = 2 * z.paramsPerToken * s.numScheduledTokens + z.attentionFlopsPerKey * s.numScheduledTokens * (s.numContextTokens / seqs);
  const bytes = z.weightBytes + (m.noKv ? 0 : (s.numContextTokens + s.numScheduledTokens) * z.kvBytesPerToken);
  const computeMs = (flops / (hw.peakTflops * 1e12 * (m.noEff ? 1 : hw.computeEfficiency))) * 1e3;
  const memoryMs = (bytes / (hw.bandwidthTBps * 1e12 * (m.noEff ? 1 : hw.bandwidthEfficiency))) * 1e3;
  return (m.sum ? computeMs + memoryMs : Math.max(computeMs, memoryMs)) + (m.noOverhead ? 0 : hw.stepOverheadMs);
}

export function pickGamma(alpha: number, c: number, verifyCost: (g: number) => number, maxGamma: number, m: { textbook?: boolean; tokensOnly?: boolean; tiesUp?: boolean; noBonus?: boolean } = {}): number {
  let best = 1;
  let bestValue = -Infinity;
  for (let g = 1; g <= maxGamma; g++) {
    let e = m.noBonus ? 0 : 1;
    for (let k = 1; k <= g; k++) e += alpha ** k;
    const value = m.tokensOnly ? e : e / (g * c + (m.textbook ? 1 : verifyCost(g)));
    if (m.tiesUp ? value >= bestValue : value > bestValue + 1e-12) {
      best = g;
      bestValue = value;
    }
  }
  return best;
}

export const right: Record<string, unknown> = {
  'l6.request-kv-bytes': (c: LlamaConfig, b: number, p: number, o: number, bs: number) => requestKvBytes(c, b, p, o, bs),
  'l6.step-ms': (hw: Hardware, z: StepSizes, s: StepCostInput) => stepMs(hw, z, s),
  'l6.best-gamma': (a: number, c: number, v: (g: number) => number, max: number) => pickGamma(a, c, v, max),
};
