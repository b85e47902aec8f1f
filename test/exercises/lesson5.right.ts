// Correct answers to lesson 5's build-it exercises (the same code as notebooks/solutions/05-*.ipynb).
import type { StepDecision, StepState } from '../../lib/exercises/lesson5';

export function makeAllocator(numBlocks: number, blockSize: number, mistakes: { noForkRefs?: boolean; noCow?: boolean; headFirst?: boolean; lifo?: boolean; cowAll?: boolean } = {}) {
  const refCount = new Array<number>(numBlocks).fill(0);
  const freeList = Array.from({ length: numBlocks }, (_, i) => i); // least recently freed first
  const tables = new Map<number, number[]>();
  const tokens = new Map<number, number>();
  const blocksFor = (n: number) => Math.ceil(n / blockSize);
  const take = () => {
    const id = mistakes.lifo ? freeList.pop()! : freeList.shift()!;
    refCount[id] = 1;
    return id;
  };
  const release = (id: number) => {
    refCount[id]--;
    if (refCount[id] === 0) freeList.push(id);
  };
  return {
    allocate(seq: number, n: number) {
      tables.set(seq, Array.from({ length: blocksFor(n) }, take));
      tokens.set(seq, n);
    },
    append(seq: number, n: number) {
      const table = tables.get(seq)!;
      const first = tokens.get(seq)!;
      // copy-on-write: the shared blocks the new tokens land in
      const from = mistakes.cowAll ? 0 : Math.floor(first / blockSize);
      if (!mistakes.noCow) {
        for (let i = from; i < Math.min(table.length, blocksFor(first + n)); i++) {
          if (refCount[table[i]] > 1) {
            const fresh = take();
            release(table[i]);
            table[i] = fresh;
          }
        }
      }
      while (table.length < blocksFor(first + n)) table.push(take());
      tokens.set(seq, first + n);
    },
    fork(parent: number, child: number) {
      const shared = [...tables.get(parent)!];
      if (!mistakes.noForkRefs) for (const id of shared) refCount[id]++;
      tables.set(child, shared);
      tokens.set(child, tokens.get(parent)!);
    },
    free(seq: number) {
      const table = tables.get(seq)!;
      if (mistakes.headFirst) for (const id of table) release(id);
      else for (let i = table.length - 1; i >= 0; i--) release(table[i]);
      tables.delete(seq);
      tokens.delete(seq);
    },
    blockTable: (seq: number) => tables.get(seq)!,
    refCount: (block: number) => refCount[block],
    numFree: () => freeList.length,
  };
}

export function scheduleStep(s: StepState, mistakes: { admitAfterPreempt?: boolean; preemptOldest?: boolean; noChunk?: boolean; keepVictimBlocks?: boolean; skipAhead?: boolean } = {}): StepDecision {
  const out: StepDecision = { scheduled: [], preempted: [], admitted: [] };
  const running = s.running.map((q) => ({ ...q, blocks: Math.ceil(q.numComputed / s.blockSize) }));
  const waiting = [...s.waiting];
  let free = s.numFreeBlocks;
  let budget = s.maxNumBatchedTokens;
  const blocksFor = (n: number) => Math.ceil(n / s.blockSize);
  for (let i = 0; i < running.length && budget > 0; i++) {
    const seq = running[i];
    const n = Math.min(seq.numTokens - seq.numComputed, budget);
    let gone = false;
    while (blocksFor(seq.numComputed + n) - seq.blocks > free) {
      const v = mistakes.preemptOldest ? 0 : running.length - 1;
      const victim = running[v];
      running.splice(v, 1);
      if (!mistakes.keepVictimBlocks) free += victim.blocks;
      out.preempted.push(victim.id);
      if (victim === seq) {
        gone = true;
        break;
      }
      if (v < i) i--;
    }
    if (gone) break;
    free -= blocksFor(seq.numComputed + n) - seq.blocks;
    out.scheduled.push([seq.id, n]);
    budget -= n;
  }
  while ((mistakes.admitAfterPreempt || out.preempted.length === 0) && waiting.length > 0 && budget > 0) {
    if (running.length >= s.maxNumSeqs) break;
    const seq = waiting[0];
    const n = mistakes.noChunk ? seq.numTokens : Math.min(seq.numTokens, budget);
    if (blocksFor(n) > free || (mistakes.noChunk && n > budget)) {
      if (mistakes.skipAhead) {
        waiting.shift();
        continue;
      }
      break;
    }
    waiting.shift();
    free -= blocksFor(n);
    running.push({ ...seq, blocks: blocksFor(n) });
    out.admitted.push(seq.id);
    out.scheduled.push([seq.id, n]);
    budget -= n;
  }
  return out;
}

export const right: Record<string, unknown> = {
  'l5.live-share': (lengths: number[], blockSize: number) => {
    const tokens = lengths.reduce((a, n) => a + n, 0);
    const slots = lengths.reduce((a, n) => a + Math.ceil(n / blockSize) * blockSize, 0);
    return tokens / slots;
  },
  'l5.allocator': (numBlocks: number, blockSize: number) => makeAllocator(numBlocks, blockSize),
  'l5.schedule-step': (s: StepState) => scheduleStep(s),
};
