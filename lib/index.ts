// Public API of inference-lab: re-exports only, grouped by area in the order the lessons meet
// them. Internals (kernels, layout helpers, hashing, bench plumbing) are not exported: tests and
// scripts import them from their own modules.

// ---- backend: pick and start a tfjs backend
export { AUTO_ORDER, BackendUnavailableError, backendInfo, initBackend, shutdownBackend } from './backend';
export type { AdapterFacts, BackendFacts, BackendInfo, BackendName, BackendOptions, BackendPreference, GpuFeatures, GpuLimits, SkippedBackend } from './backend';

// ---- model: config, checkpoints and presets, the Llama forward, tokenizer
export { configFromHF, configToHF, llamaSizes, resolveLlamaConfig } from './model/config';
export type { LlamaConfig, LlamaConfigInput, LlamaSizes } from './model/config';
export { extraDrafts, loadModel, modelFromPreset } from './model/load';
export type { LoadModelOptions } from './model/load';
export { listPresets, loadPreset, randomWeights } from './model/presets';
export type { Preset, RandomInit } from './model/presets';
export { LlamaModel, ropeInvFreq } from './model/llama';
export { useWasmDecodeStep, wasmDecodeStepEnabled } from './model/kernels/wasmDecode';
export type { ForwardOptions, LayerWeights, LlamaWeights, LogitsSelection } from './model/llama';
export type { WeightSource } from './model/weights';
export { SafetensorsCheckpoint, SafetensorsFile, encodeSafetensors, writeSafetensors } from './formats/safetensors';
export type { HostTensor, SafetensorsDtype, SafetensorsEntry, TensorToWrite } from './formats/safetensors';
export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from './formats/dtype';
export { loadTokenizer } from './generate/tokenizer';
export type { Tokenizer } from './generate/tokenizer';
export { IncrementalDecoder } from './generate/detokenizer';

// ---- kv: the KVCache interface and its five caches; quantization maths; per-layer budgets
export type { KVCache, KVShape, LayerKV, PerStepBatchKVCache, StepPlan, StepSequence } from './kv/cache';
export { ContiguousKVCache } from './kv/contiguous';
export type { AppendMode, ContiguousKVCacheOptions } from './kv/contiguous';
export { NoKVCache } from './kv/none';
export { analyticErrorBound, dequantize, packCodes, quantize, resolveQuantScheme, schemeName, unpackCodes } from './kv/quant';
export type { PackedBlock, QuantBits, QuantGranularity, QuantScheme, QuantSchemeInput } from './kv/quant';
export { KV_QUANT_PRESETS, QuantizedKVCache, bitsPerElement, quantizedKVName, resolveQuantizedKVConfig } from './kv/quantized';
export type { QuantizedKVCacheConfig, QuantizedKVCacheInput } from './kv/quantized';
export { EvictingKVCache, resolveEvictingConfig } from './kv/evicting';
export type { EvictingKVCacheConfig, EvictingKVCacheInput, EvictionPolicy } from './kv/evicting';
export { proportionalBudgets, uniformBudgets } from './kv/budget';
export { PagedKVCache } from './kv/paged';
export type { PagedKVCacheOptions, PagedWriteMode } from './kv/paged';

// ---- sampling: logits -> token (filters, penalties, seeded PRNG, stop conditions, logprobs)
export {
  MAX_LOGPROBS,
  Rng,
  StopChecker,
  applyPenalties,
  applyTemperature,
  argmax,
  isGreedy,
  logitsToLogprobs,
  logitsToProbs,
  minPFilter,
  randomSeed,
  resolveSamplingParams,
  sampleFromProbs,
  sampleToken,
  topKFilter,
  topPFilter,
} from './generate/sampling';
export type { FinishReason, SampledToken, SamplingParams, SamplingParamsInput, StopStatus, TokenHistory, TokenLogprob } from './generate/sampling';

// ---- generate: the generation loop (naive and cached, batched, streamed) and its output record
export { generate, generateStream } from './generate/generate';
export type { GenerateMode, GenerateOptions, GenerationMetrics, GenerationOutput, LanguageModel, Prompt } from './generate/generate';
export { OutputRecorder, tokenLatencies } from './generate/output';
export type { CompletionFinishReason, OutputRecorderOptions, RecordedOutput, TokenEvent, TokenLatencies } from './generate/output';

// ---- spec: speculative decoding (draft model, prompt lookup, rejection sampling, adaptive gamma)
export { acceptReject, checkDraftCompatible, draftTokens, residual, rollback, targetProbs, verify } from './spec/speculative';
export type { AcceptOptions, AcceptResult, DraftProposal, SpecRow, SpecSamplingParams } from './spec/speculative';
export { ModelDrafter } from './spec/drafter';
export type { Drafter } from './spec/drafter';
export { PromptLookupDrafter, promptLookup } from './spec/promptLookup';
export type { PromptLookupOptions } from './spec/promptLookup';
export { AdaptiveGamma, bestGamma, gammaPolicy } from './spec/adaptive';
export type { AdaptiveGammaOptions, GammaPolicy } from './spec/adaptive';
export { SpecStats, expectedTokensPerStep, predictedSpeedup } from './spec/stats';
export type { SpecSummary, StepTrace } from './spec/stats';
export { SpeculativeDecoder } from './spec/decoder';
export type { RowStep, SpeculativeDecoderConfig } from './spec/decoder';
export { speculativeGenerate, speculativeGenerateStream } from './spec/generate';
export type { SpeculativeOptions, SpeculativeOutput } from './spec/generate';

// ---- engine: the vLLM-style server (block manager, scheduler, model runner, LLM API, workloads)
export { BlockManager } from './engine/blockManager';
export type { Block, BlockManagerOptions, PrefixCacheStats } from './engine/blockManager';
export { Sequence } from './engine/sequence';
export type { SequenceStatus, SequenceTimes } from './engine/sequence';
export { ENGINE_PRESETS, resolveEngineConfig } from './engine/config';
export type { EngineConfig, EngineConfigInput, SchedulerPolicy, SpeculativeEngineConfig, SpeculativeEngineConfigInput } from './engine/config';
export { DEFAULT_STEP_COST, RealClock, VirtualClock } from './engine/clock';
export type { Clock, LinearStepCost, StepCostInput } from './engine/clock';
export { Scheduler } from './engine/scheduler';
export type { ScheduledSequence, SchedulerOutput } from './engine/scheduler';
export { ModelRunner } from './engine/modelRunner';
export type { ModelRunnerOptions, PreparedCall, RunnerOutput, SpeculativeRowOutput } from './engine/modelRunner';
export { sequenceMetrics, summarizeRun } from './engine/metrics';
export type { BlockTableSnapshot, RunSummary, SequenceMetrics, StepEntry, StepMetrics, StepSpecMetrics } from './engine/metrics';
export { capturedOptionsFor, LLMEngine } from './engine/llmEngine';
export type { AddRequestOptions, CompletionOutput, EnginePrompt, RequestOutput } from './engine/llmEngine';
export { LLM } from './engine/llm';
export type { LLMOptions } from './engine/llm';
export { makeWorkload, replay } from './engine/workload';
export type { ArrivalSpec, LengthSpec, ReplayOptions, WorkloadRequest, WorkloadSpec } from './engine/workload';

export { pagedModel } from './engine/pagedModel';
export type { EngineModel, PagedModel, PagedSequence } from './engine/pagedModel';

// ---- gpu: the captured WebGPU decode step (fused WGSL kernels, one command buffer per step)
export { acquireGpu, releaseSharedGpu, sharedGpu } from './gpu/device';
export type { AcquireGpuOptions, GpuContext, GpuDeviceInfo } from './gpu/device';
export { contiguousTables, GpuLlama, packBf16 } from './gpu/llama';
export type { GpuLlamaOptions, GpuStepResult, GpuStepSequence, GpuStepStats } from './gpu/llama';
export { loadGpuModel } from './gpu/load';
export { checkKernels } from './gpu/checks';
export type { CheckKernelsOptions, KernelCheck } from './gpu/checks';
export { capturedDispatches } from './gpu/kernels';
export type { WeightFormat } from './gpu/kernels';

// ---- eval: quality of a cache against float32 (perplexity, KL, agreement) and attention measurements
export { compareTeacherForced, greedyAgreement, perplexity } from './eval/quality';
export type { CacheFactory, EvictedScore, GreedyAgreement, TeacherForcedOptions, TeacherForcedResult } from './eval/quality';
export { attentionEntropy, attentionError } from './eval/attention';
export type { AttentionEntropy } from './eval/attention';

// ---- roofline and bench: measured roofs, predicted costs, timing
export { attainableGflops, attentionFlopsPerKey, bytesPerDecodeStep, bytesPerDecodedToken, decodeCost, kvBytesPerToken, measureBandwidth, measureMatmulFlops, predictDecodeTokensPerSecond, prefillCost, ridgeIntensity, stepCost } from './bench/roofline';
export type { BandwidthOptions, BandwidthResult, DecodePrediction, DecodeTraffic, MatmulFlopsOptions, MatmulFlopsResult, ModelCost, Roofs, StepCost } from './bench/roofline';
export { machineInfo, summarize, timeIt } from './bench/harness';
export type { MachineInfo, TimingStats } from './bench/harness';
export { percentile } from './eval/stats';
export { H200_BF16, LLAMA32_1B, LLAMA3_8B, costModelAssumptions, deployment, deploymentSizes, modelSchedule, modelSpeculative, modeledDecodeMs, modeledRidge, modeledStepMs } from './bench/costModel';
export type { AcceptanceStep, Deployment, Hardware, ModeledSpeculation } from './bench/costModel';
export { quoteClaim, seedClaim, seedClaimRows, seedClaims } from './viz/seedClaims';
export type { SeedClaim, SeedClaims, SeedSource } from './viz/seedClaims';

// ---- viz: charts and notebook display
export * from './viz';

// ---- lessons: QUICK/FULL mode and data paths for the notebooks
export { byMode, dataPath, h200Record, lessonMode } from './viz/lessons';
export type { H200Record, LessonMode } from './viz/lessons';

// ---- exercises: build-it and predict-then-measure tasks that check themselves (notebooks' "Exercises")
export {
  buildExercise,
  check,
  checkPrediction,
  closeArray,
  closeNumber,
  comparePrediction,
  predictExercise,
  progressFile,
  randomInt,
  randomNormals,
  randomPick,
  readProgress,
  recordProgress,
  runCases,
  sameValue,
  short,
  verdictBundle,
} from './exercises/check';
export type { BuildExercise, Case, CaseCheckOptions, Compare, Comparison, Exercise, Failure, PredictExercise, ProgressEntry, Verdict } from './exercises/check';
export { allExercises, progressRows, showProgress } from './exercises/progress';
export { lesson1, lesson1Exercises } from './exercises/lesson1';
export { lesson2, lesson2Exercises } from './exercises/lesson2';
export { lesson3, lesson3Exercises } from './exercises/lesson3';
export { lesson4, lesson4Exercises } from './exercises/lesson4';
export type { AcceptRejectFn } from './exercises/lesson4';
export { lesson5, lesson5Exercises } from './exercises/lesson5';
export type { Allocator, AllocatorFactory, StepDecision, StepSeq, StepState } from './exercises/lesson5';
export { lesson6, lesson6Exercises } from './exercises/lesson6';
export type { StepSizes } from './exercises/lesson6';

// ---- data and oracles: the HF-oracle check, GGUF export, llama.cpp as a second oracle
export { checkAgainstOracle, loadGoldenFile } from './oracle/hf';
export type { GoldenFile, OracleReport } from './oracle/hf';
export { exportGGUF, llamaToGGUF, writeGGUF } from './formats/gguf';
export type { GGUFTensor, GGUFValue, HFLlamaConfig } from './formats/gguf';
export { getLlamaCpp, llamaCppGreedy } from './oracle/llamacpp';
export type { LlamaCppResult } from './oracle/llamacpp';
