// Plausible wrong answers to lesson 1's exercises: each must fail its check with a hint
// (test/exercises.test.ts).

type Traffic = { weightBytes: number; kvBytesPerToken: number; contextLength: number; batch: number };
type Model = { params: number; weightBytes: number; kvBytesPerToken: number; attentionFlopsPerKey: number };
type Step = { flops: number; bytes: number; ops: number };
type Machine = { peakGflops: number; bandwidthGBps: number; usPerOp: number };
type Prediction = Traffic & { bandwidthGBps: number; flopsPerToken: number; peakGflops: number };

export const wrong: Record<string, { name: string; fn: unknown }[]> = {
  'l1.bytes-per-token': [
    { name: 'the weights counted per sequence (not shared by the batch)', fn: (t: Traffic) => t.weightBytes + t.contextLength * t.kvBytesPerToken },
    { name: 'the step bytes, not divided by the batch', fn: (t: Traffic) => t.weightBytes + t.batch * t.contextLength * t.kvBytesPerToken },
    { name: 'the cache shared by the batch too', fn: (t: Traffic) => (t.weightBytes + t.contextLength * t.kvBytesPerToken) / t.batch },
    { name: 'off by one token of context', fn: (t: Traffic) => t.weightBytes / t.batch + (t.contextLength - 1) * t.kvBytesPerToken },
  ],
  'l1.decode-intensity': [
    { name: 'one FLOP per weight', fn: (m: Model, B: number, n: number) => (m.params * B + m.attentionFlopsPerKey * B * n) / (m.weightBytes + B * n * m.kvBytesPerToken) },
    { name: 'FLOPs of one sequence only', fn: (m: Model, B: number, n: number) => (2 * m.params + m.attentionFlopsPerKey * n) / (m.weightBytes + B * n * m.kvBytesPerToken) },
    { name: 'the KV bytes forgotten', fn: (m: Model, B: number, n: number) => (2 * m.params * B + m.attentionFlopsPerKey * B * n) / m.weightBytes },
    { name: 'attention forgotten', fn: (m: Model, B: number, n: number) => (2 * m.params * B) / (m.weightBytes + B * n * m.kvBytesPerToken) },
  ],
  'l1.regime': [
    { name: 'the two roofs only (no overhead term)', fn: (s: Step, m: Machine) => (s.flops / m.peakGflops > s.bytes / m.bandwidthGBps ? 'compute-bound' : 'bandwidth-bound') },
    { name: 'microseconds taken as milliseconds', fn: (s: Step, m: Machine) => pick(s.flops / (m.peakGflops * 1e9), s.bytes / (m.bandwidthGBps * 1e9), s.ops * m.usPerOp * 1e-3) },
    { name: 'the smallest term instead of the largest', fn: (s: Step, m: Machine) => pickMin(s.flops / (m.peakGflops * 1e9), s.bytes / (m.bandwidthGBps * 1e9), s.ops * m.usPerOp * 1e-6) },
  ],
  'l1.predict-tok-s': [
    { name: 'the faster roof (min instead of max)', fn: (p: Prediction) => p.batch / Math.min(stepBytes(p) / (p.bandwidthGBps * 1e9), (p.batch * p.flopsPerToken) / (p.peakGflops * 1e9)) },
    { name: 'one sequence\'s tokens only', fn: (p: Prediction) => 1 / Math.max(stepBytes(p) / (p.bandwidthGBps * 1e9), (p.batch * p.flopsPerToken) / (p.peakGflops * 1e9)) },
    { name: 'the memory roof only', fn: (p: Prediction) => (p.batch * p.bandwidthGBps * 1e9) / stepBytes(p) },
    { name: 'GB taken as 2^30 bytes', fn: (p: Prediction) => p.batch / Math.max(stepBytes(p) / (p.bandwidthGBps * 2 ** 30), (p.batch * p.flopsPerToken) / (p.peakGflops * 2 ** 30)) },
  ],
};

function stepBytes(p: Prediction): number {
  return p.weightBytes + p.batch * p.contextLength * p.kvBytesPerToken;
}

function pick(c: number, b: number, o: number): string {
  return c >= b && c >= o ? 'compute-bound' : b >= o ? 'bandwidth-bound' : 'overhead-bound';
}

function pickMin(c: number, b: number, o: number): string {
  return c <= b && c <= o ? 'compute-bound' : b <= o ? 'bandwidth-bound' : 'overhead-bound';
}
