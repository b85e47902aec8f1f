// Shared key slots: the bookkeeping of a cache whose sequences share slots 0..S-1 of one tensor
// per layer (the contiguous and quantized caches). Per sequence it records the position of the
// token in each slot, -1 when the slot is empty (left padding, or a token rolled back), and the
// tokens it holds. Plain numbers; the caches own the tensors.

import { checkTruncate } from './cache';

/** Per-sequence slot positions and lengths of a cache with shared slots (lesson: "the KV cache"). */
export class SlotTable {
  /** per sequence, the position held by each slot in use (-1 = empty); every row has the same length */
  readonly rows: number[][];
  /** tokens held per sequence */
  private readonly lens: number[];

  constructor(batchSize: number) {
    this.rows = Array.from({ length: batchSize }, () => []);
    this.lens = new Array<number>(batchSize).fill(0);
  }

  /** Tokens held per sequence. */
  lengths(): number[] {
    return [...this.lens];
  }

  /** Slots in use (the same for every sequence). */
  get used(): number {
    return this.rows[0].length;
  }

  /**
   * Add a step's T slots to every sequence, sequence b's counts[b] new tokens in the last of them
   * (the batching rule of cache.ts). Returns the new tokens' positions, -1 for padding. [B, T]
   */
  append(counts: readonly number[], T: number): Int32Array {
    const queryPositions = new Int32Array(this.rows.length * T);
    this.rows.forEach((row, b) => {
      const n = counts[b];
      for (let i = 0; i < T; i++) {
        const pos = i >= T - n ? this.lens[b] + (i - (T - n)) : -1;
        row.push(pos);
        queryPositions[b * T + i] = pos;
      }
      this.lens[b] += n;
    });
    return queryPositions;
  }

  /** Positions held by the first S key slots (S >= slots in use; the slots past them are empty). [B, S] */
  keyPositions(S: number): Int32Array {
    const out = new Int32Array(this.rows.length * S).fill(-1);
    this.rows.forEach((row, b) => out.set(row, b * S));
    return out;
  }

  /**
   * Roll sequence b back to lengths[b] tokens: its later slots become empty. Trailing slots empty
   * in every sequence are given back, except the first `keep` (slots the cache still stores).
   * Returns the slots in use afterwards.
   */
  truncate(lengths: readonly number[], keep = 0): number {
    checkTruncate(lengths, this.lens);
    let used = keep;
    this.rows.forEach((row, b) => {
      for (let s = 0; s < row.length; s++) {
        if (row[s] >= lengths[b]) row[s] = -1;
        if (row[s] >= 0) used = Math.max(used, s + 1);
      }
      this.lens[b] = lengths[b];
    });
    for (const row of this.rows) row.length = used;
    return used;
  }

  /** Forget everything. */
  clear(): void {
    for (const row of this.rows) row.length = 0;
    this.lens.fill(0);
  }
}
