// Public API of inference-lab: re-exports only.

export * from './sampling';
export { AUTO_ORDER, BackendUnavailableError, backendInfo, initBackend, shutdownBackend } from './backend';
export type { AdapterFacts, BackendFacts, BackendInfo, BackendName, BackendOptions, BackendPreference, GpuFeatures, GpuLimits, SkippedBackend } from './backend';
export { attainableGflops, attentionFlopsPerKey, bytesPerDecodeStep, bytesPerDecodedToken, decodeCost, kvBytesPerToken, measureBandwidth, measureMatmulFlops, predictDecodeTokensPerSecond, prefillCost, ridgeIntensity, stepCost } from './roofline';
export type { BandwidthOptions, BandwidthResult, DecodePrediction, DecodeTraffic, MatmulFlopsOptions, MatmulFlopsResult, ModelCost, Roofs, StepCost } from './roofline';
export { gitState, machineInfo, progressBar, summarize, timeIt, writeBenchJson } from './bench/harness';
export type { BenchRecord, MachineInfo, ProgressBar, TimingStats } from './bench/harness';
