// The CPU kernels' one wasm module (AssemblyScript). scripts/kernels/build.ts compiles this entry
// with asc into lib/model/kernels/cpuKernels.generated.ts; lib/model/kernels/cpu.ts loads it.

export { qkT, pv } from './attention';
export { addRmsNorm, embedColumns, rope, siluMul } from './fused';
export { fusedMaddProbe, gemm, gemmBf16, gemmThreads } from './gemv';
export { decodeLayers, decodeScratchBytes } from './decode';
