// Correct answers to lesson 1's build-it exercises (the same code as notebooks/solutions/01-why-inference-is-slow.ipynb).

function myBytesPerToken(t: { weightBytes: number; kvBytesPerToken: number; contextLength: number; batch: number }): number {
  // one step: every weight once (shared by the batch) + each sequence's own cache
  const stepBytes = t.weightBytes + t.batch * t.contextLength * t.kvBytesPerToken;
  return stepBytes / t.batch; // the step makes `batch` tokens
}

function myDecodeIntensity(model: { params: number; weightBytes: number; kvBytesPerToken: number; attentionFlopsPerKey: number }, batch: number, contextLength: number): number {
  const flops = 2 * model.params * batch + model.attentionFlopsPerKey * batch * contextLength; // matmuls + attention
  const bytes = model.weightBytes + batch * contextLength * model.kvBytesPerToken; // weights once + every cache
  return flops / bytes;
}

function myRegime(step: { flops: number; bytes: number; ops: number }, machine: { peakGflops: number; bandwidthGBps: number; usPerOp: number }): 'compute-bound' | 'bandwidth-bound' | 'overhead-bound' {
  // the three times, all in seconds
  const computeS = step.flops / (machine.peakGflops * 1e9);
  const bandwidthS = step.bytes / (machine.bandwidthGBps * 1e9);
  const overheadS = step.ops * machine.usPerOp * 1e-6;
  if (computeS >= bandwidthS && computeS >= overheadS) return 'compute-bound';
  return bandwidthS >= overheadS ? 'bandwidth-bound' : 'overhead-bound';
}

function myPredictTokensPerSecond(p: { weightBytes: number; kvBytesPerToken: number; contextLength: number; batch: number; bandwidthGBps: number; flopsPerToken: number; peakGflops: number }): number {
  const memoryS = (p.weightBytes + p.batch * p.contextLength * p.kvBytesPerToken) / (p.bandwidthGBps * 1e9);
  const computeS = (p.batch * p.flopsPerToken) / (p.peakGflops * 1e9);
  return p.batch / Math.max(memoryS, computeS); // the slower roof sets the step time
}

export const right: Record<string, unknown> = {
  'l1.bytes-per-token': myBytesPerToken,
  'l1.decode-intensity': myDecodeIntensity,
  'l1.regime': myRegime,
  'l1.predict-tok-s': myPredictTokensPerSecond,
};
