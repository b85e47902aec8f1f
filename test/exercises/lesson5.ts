// Plausible wrong answers to lesson 5's build-it exercises: each must fail its check, with a hint
// (test/exercises.test.ts). Keyed by exercise id.
import type { StepState } from '../../lib/exercises/lesson5';
import { makeAllocator, scheduleStep } from './lesson5.right';

export const wrong: Record<string, { name: string; fn: unknown }[]> = {
  'l5.live-share': [
    { name: 'floor instead of ceil for the blocks', fn: (l: number[], bs: number) => l.reduce((a, n) => a + n, 0) / l.reduce((a, n) => a + Math.max(1, Math.floor(n / bs)) * bs, 0) },
    { name: 'the mean of per-sequence shares (unweighted)', fn: (l: number[], bs: number) => l.reduce((a, n) => a + n / (Math.ceil(n / bs) * bs), 0) / l.length },
    { name: 'tokens over blocks (forgets the block size)', fn: (l: number[], bs: number) => l.reduce((a, n) => a + n, 0) / l.reduce((a, n) => a + Math.ceil(n / bs), 0) },
  ],
  'l5.allocator': [
    { name: 'fork does not raise the ref counts', fn: (n: number, bs: number) => makeAllocator(n, bs, { noForkRefs: true }) },
    { name: 'append writes into a shared block (no copy-on-write)', fn: (n: number, bs: number) => makeAllocator(n, bs, { noCow: true }) },
    { name: 'free releases the table head first', fn: (n: number, bs: number) => makeAllocator(n, bs, { headFirst: true }) },
    { name: 'the free list is a stack (most recently freed reused first)', fn: (n: number, bs: number) => makeAllocator(n, bs, { lifo: true }) },
    { name: 'copy-on-write copies every shared block, not only those written', fn: (n: number, bs: number) => makeAllocator(n, bs, { cowAll: true }) },
  ],
  'l5.schedule-step': [
    { name: 'admits waiting sequences in a step that preempted', fn: (s: StepState) => scheduleStep(s, { admitAfterPreempt: true }) },
    { name: 'preempts the oldest running sequence', fn: (s: StepState) => scheduleStep(s, { preemptOldest: true }) },
    { name: 'no chunked prefill (a prompt waits for a budget that holds it whole)', fn: (s: StepState) => scheduleStep(s, { noChunk: true }) },
    { name: 'a preempted sequence keeps its blocks', fn: (s: StepState) => scheduleStep(s, { keepVictimBlocks: true }) },
    { name: 'skips a waiting sequence that does not fit and admits the next', fn: (s: StepState) => scheduleStep(s, { skipAhead: true }) },
  ],
};
