// Relaxed SIMD (WebAssembly's fused multiply-add, among others): whether this engine runs it.
// Chrome and Edge have it since 114, Node from 22; Node 20's V8 has it behind a flag, which
// `relaxedSimdSupported` sets (V8's flags are the process's, so worker threads see it too). The
// CPU kernels' relaxed build (cpu.ts) is used where this says yes.

// the smallest module with a relaxed SIMD instruction: (func (result v128) v128.const 0 x3
// f32x4.relaxed_madd)
const PROBE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type: [] -> [v128]
  0x03, 0x02, 0x01, 0x00, // function 0 of type 0
  0x0a, 0x3d, 0x01, 0x3b, 0x00, // code: one body of 59 bytes, no locals
  ...[0, 1, 2].flatMap(() => [0xfd, 0x0c, ...new Array<number>(16).fill(0)]), // v128.const 0, three times
  0xfd, 0x85, 0x02, // f32x4.relaxed_madd (0xfd 261)
  0x0b, // end
]);

let supported: boolean | null = null;

/** Whether WebAssembly here validates relaxed SIMD (in Node 20, after turning on V8's flag for it). */
export function relaxedSimdSupported(): boolean {
  if (supported !== null) return supported;
  supported = WebAssembly.validate(PROBE);
  if (!supported && typeof process !== 'undefined' && typeof process.versions?.node === 'string') {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      (require('v8') as typeof import('v8')).setFlagsFromString('--experimental-wasm-relaxed-simd');
      supported = WebAssembly.validate(PROBE);
    } catch {
      supported = false; // a runtime without V8's flags
    }
  }
  return supported;
}
