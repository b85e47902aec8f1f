// In-place access to a float32 tensor's memory, for caches that write keys and values straight
// into a preallocated tensor (wasm: the module heap; cpu: the backend's own array). Other backends
// (webgpu, tensorflow) keep tensors out of reach of JS, so caches fall back to concat/scatter there.
import * as tf from '@tensorflow/tfjs-core';

interface WasmLike {
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
}
interface CpuLike {
  data: { get(dataId: tf.DataId): { values?: unknown } };
}

/** Whether the current backend lets caches write into tensor memory. */
export function inPlaceSupported(): boolean {
  const name = tf.getBackend();
  return name === 'wasm' || name === 'cpu';
}

/** A Float32Array over the memory of a float32 tensor (writes change the tensor). */
export function memoryOf(t: tf.Tensor): Float32Array {
  const name = tf.getBackend();
  if (name === 'wasm') return (tf.backend() as unknown as WasmLike).typedArrayFromHeap(t);
  if (name === 'cpu') {
    const values = (tf.backend() as unknown as CpuLike).data.get(t.dataId).values;
    if (values instanceof Float32Array) return values;
  }
  throw new Error(`in-place KV writes are not available on backend '${name}'`);
}
