// No cache: the "naive" path. Every step passes the whole sequence and attends over exactly
// the keys and values computed in that step; nothing is kept between steps.

import type * as tf from '@tensorflow/tfjs-core';

import { checkCounts, checkTruncate, stepPositions, type KVCache, type KVShape, type LayerKV, type StepPlan } from './cache';

/**
 * The cache that caches nothing (lesson: "generation without a KV cache"): each forward
 * recomputes keys and values for the whole prefix, positions start at 0 every step.
 */
export class NoKVCache implements KVCache {
  constructor(
    readonly shape: KVShape,
    readonly batchSize: number,
  ) {}

  lengths(): number[] {
    return new Array<number>(this.batchSize).fill(0);
  }

  beginStep(counts: readonly number[]): StepPlan {
    const T = checkCounts(counts, this.batchSize);
    const positions = stepPositions(this.lengths(), counts, T);
    return { batchSize: this.batchSize, T, S: T, queryPositions: positions, keyPositions: positions };
  }

  update(_layer: number, k: tf.Tensor4D, v: tf.Tensor4D): LayerKV {
    return { k, v };
  }

  truncate(lengths: readonly number[]): void {
    checkTruncate(lengths, this.lengths());
  }

  bytes(): number {
    return 0;
  }

  dispose(): void {}
}
