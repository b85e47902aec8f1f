// Lesson 5's exercises (notebooks/05-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
//
// Build it: the live-token share of a paged pool, a block allocator with reference counts and
// copy-on-write (against lib/engine's BlockManager on seeded op sequences), one scheduler step
// with a token budget (against lib/engine's Scheduler on seeded states). Predict, then measure:
// the live-token share of the lesson's workload with blocks of 64 tokens.
import { Rng, resolveSamplingParams } from '../generate/sampling';
import { BlockManager } from '../engine/blockManager';
import { resolveEngineConfig, type EngineConfigInput } from '../engine/config';
import { Scheduler } from '../engine/scheduler';
import { Sequence } from '../engine/sequence';
import type { WorkloadRequest } from '../engine/workload';
import { closeNumber, runCases, sameValue, short, type BuildExercise, type Case, type Exercise, type PredictExercise, type Verdict } from './check';

// ---- sequences for the library's block manager and scheduler (token values do not matter: no prefix cache)

let nextSeqId = 0;
function seqOf(prompt: number | readonly number[], maxTokens = 1_000_000): Sequence {
  const id = nextSeqId++;
  const promptTokenIds = typeof prompt === 'number' ? Array.from({ length: prompt }, (_, i) => 1 + (i % 97)) : prompt;
  return new Sequence({
    seqId: id, requestId: `ex-${id}`, index: 0, promptTokenIds, seed: 0, eosTokenIds: [], arrival: 0,
    params: resolveSamplingParams({ temperature: 0, maxTokens, ignoreEos: true }),
  });
}

function failed(id: string, cases: number, name: string, input: string, expected: string, got: string, hint: string): Verdict {
  return { id, passed: false, cases, failure: { case: name, input, expected, got, hint } };
}

// ---- 1. the live-token share

/** The share of the pool's reserved slots holding tokens, when each sequence holds blocks for exactly its tokens. */
function liveShareReference(lengths: number[], blockSize: number): number {
  const bm = new BlockManager({ numBlocks: lengths.reduce((a, n) => a + Math.ceil(n / blockSize), 0) + 1, blockSize, enablePrefixCaching: false });
  const seqs = lengths.map((n) => {
    const s = seqOf(n);
    bm.allocate(s, n);
    s.numComputedTokens = n;
    return s;
  });
  return bm.liveTokens(seqs).liveTokens / (bm.numUsedBlocks * blockSize);
}

function liveShareCases(): Case<[number[], number]>[] {
  const rng = new Rng(5_001);
  const cases: Case<[number[], number]>[] = [
    { name: 'one sequence, one token more than a block', input: [[17], 16] },
    { name: 'edge: exact multiples of the block size', input: [[32, 64, 16], 16] },
    { name: 'edge: blocks of one token', input: [[5, 9, 1], 1] },
    { name: 'edge: one short sequence in a big block', input: [[3], 64] },
    { name: 'long and short together', input: [[1000, 2, 3], 16] },
  ];
  for (let i = 0; i < 12; i++) {
    const bs = [4, 8, 16, 32, 64][Math.floor(rng.next() * 5)];
    cases.push({ name: `seeded random ${i + 1}`, input: [Array.from({ length: 1 + Math.floor(rng.next() * 10) }, () => 1 + Math.floor(rng.next() * 300)), bs] });
  }
  return cases;
}

// ---- 2. a block allocator with reference counts and copy-on-write

/** What the learner's allocator offers; sequences and blocks are plain ids. */
export interface Allocator {
  /** a new sequence holding numTokens tokens: fresh blocks for them */
  allocate(seq: number, numTokens: number): void;
  /** the sequence grows by numNew tokens: a private copy of a shared block they land in, then new blocks at the end */
  append(seq: number, numNew: number): void;
  /** the child starts as a copy of the parent, sharing all its blocks */
  fork(parent: number, child: number): void;
  /** every block of the sequence back (its table's tail first) */
  free(seq: number): void;
  blockTable(seq: number): number[];
  refCount(block: number): number;
  numFree(): number;
}

export type AllocatorFactory = (numBlocks: number, blockSize: number) => Allocator;

type Op = { op: 'allocate'; seq: number; tokens: number } | { op: 'append'; seq: number; tokens: number } | { op: 'fork'; parent: number; child: number } | { op: 'free'; seq: number };

interface AllocCase {
  name: string;
  numBlocks: number;
  blockSize: number;
  ops: Op[];
}

const showOp = (o: Op) =>
  o.op === 'allocate' ? `allocate(${o.seq}, ${o.tokens})` : o.op === 'append' ? `append(${o.seq}, ${o.tokens})` : o.op === 'fork' ? `fork(${o.parent}, ${o.child})` : `free(${o.seq})`;

/** The library's BlockManager behind the Allocator interface (prefix caching off). */
function referenceAllocator(numBlocks: number, blockSize: number): Allocator & { canAllocate(n: number): boolean; canAppend(seq: number, n: number): boolean } {
  const bm = new BlockManager({ numBlocks, blockSize, enablePrefixCaching: false });
  const seqs = new Map<number, Sequence>();
  const get = (id: number) => {
    const s = seqs.get(id);
    if (!s) throw new Error(`no sequence ${id}`);
    return s;
  };
  return {
    allocate(id, n) {
      const s = seqOf(n);
      bm.allocate(s, n);
      s.numComputedTokens = n;
      seqs.set(id, s);
    },
    append(id, n) {
      const s = get(id);
      bm.append(s, n);
      s.numComputedTokens += n;
    },
    fork(parent, child) {
      const c = seqOf(1);
      bm.fork(get(parent), c);
      seqs.set(child, c);
    },
    free(id) {
      bm.free(get(id));
      seqs.delete(id);
    },
    blockTable: (id) => [...get(id).blockTable],
    refCount: (b) => bm.blocks[b].refCount,
    numFree: () => bm.numFreeBlocks,
    canAllocate: (n) => bm.blocksFor(n) <= bm.numFreeBlocks,
    canAppend: (id, n) => bm.canAppend(get(id), n),
  };
}

// a seeded op sequence the pool can always serve (checked on the reference as it is built)
function randomOps(seed: number, numBlocks: number, blockSize: number, count: number): Op[] {
  const rng = new Rng(seed);
  const ref = referenceAllocator(numBlocks, blockSize);
  const live: number[] = [];
  let next = 0;
  const ops: Op[] = [];
  const pick = () => live[Math.floor(rng.next() * live.length)];
  for (let guard = 0; ops.length < count && guard < count * 20; guard++) {
    const r = rng.next();
    let op: Op | null = null;
    if (live.length === 0 || r < 0.2) {
      const tokens = 1 + Math.floor(rng.next() * blockSize * 3);
      if (ref.canAllocate(tokens)) op = { op: 'allocate', seq: next++, tokens };
    } else if (r < 0.6) {
      const seq = pick();
      const tokens = rng.next() < 0.6 ? 1 : 1 + Math.floor(rng.next() * blockSize * 2);
      if (ref.canAppend(seq, tokens)) op = { op: 'append', seq, tokens };
    } else if (r < 0.8) {
      op = { op: 'fork', parent: pick(), child: next++ };
    } else if (live.length > 1 || rng.next() < 0.3) {
      op = { op: 'free', seq: pick() };
    }
    if (!op) continue;
    apply(ref, op);
    if (op.op === 'allocate') live.push(op.seq);
    if (op.op === 'fork') live.push(op.child);
    if (op.op === 'free') live.splice(live.indexOf(op.seq), 1);
    ops.push(op);
  }
  return ops;
}

function apply(a: Allocator, o: Op): void {
  if (o.op === 'allocate') a.allocate(o.seq, o.tokens);
  else if (o.op === 'append') a.append(o.seq, o.tokens);
  else if (o.op === 'fork') a.fork(o.parent, o.child);
  else a.free(o.seq);
}

function allocatorCases(): AllocCase[] {
  const cases: AllocCase[] = [
    {
      name: 'allocate, grow, free (blocks of 4)',
      numBlocks: 8, blockSize: 4,
      ops: [{ op: 'allocate', seq: 0, tokens: 5 }, { op: 'append', seq: 0, tokens: 1 }, { op: 'append', seq: 0, tokens: 3 }, { op: 'allocate', seq: 1, tokens: 4 }, { op: 'free', seq: 0 }, { op: 'allocate', seq: 2, tokens: 9 }],
    },
    {
      name: 'fork, then both write into the shared, partly filled block',
      numBlocks: 8, blockSize: 4,
      ops: [{ op: 'allocate', seq: 0, tokens: 6 }, { op: 'fork', parent: 0, child: 1 }, { op: 'append', seq: 0, tokens: 1 }, { op: 'append', seq: 1, tokens: 1 }, { op: 'free', seq: 0 }, { op: 'free', seq: 1 }],
    },
    {
      name: 'fork at a block boundary (nothing to copy)',
      numBlocks: 8, blockSize: 4,
      ops: [{ op: 'allocate', seq: 0, tokens: 8 }, { op: 'fork', parent: 0, child: 1 }, { op: 'append', seq: 1, tokens: 1 }, { op: 'append', seq: 0, tokens: 2 }, { op: 'free', seq: 1 }],
    },
    {
      name: 'three sharers, and the free list order',
      numBlocks: 10, blockSize: 2,
      ops: [{ op: 'allocate', seq: 0, tokens: 3 }, { op: 'fork', parent: 0, child: 1 }, { op: 'fork', parent: 1, child: 2 }, { op: 'append', seq: 2, tokens: 3 }, { op: 'free', seq: 0 }, { op: 'append', seq: 1, tokens: 1 }, { op: 'free', seq: 2 }, { op: 'allocate', seq: 3, tokens: 7 }],
    },
  ];
  for (let i = 0; i < 6; i++) {
    const blockSize = [2, 4, 4, 8][i % 4];
    const numBlocks = 10 + 4 * i;
    cases.push({ name: `seeded random ops ${i + 1} (${numBlocks} blocks of ${blockSize})`, numBlocks, blockSize, ops: randomOps(5_100 + i, numBlocks, blockSize, 40) });
  }
  return cases;
}

interface AllocState {
  tables: Record<number, number[]>;
  refCounts: number[];
  free: number;
}

function stateOf(a: Allocator, live: number[], numBlocks: number): AllocState {
  const tables: Record<number, number[]> = {};
  for (const s of live) tables[s] = [...a.blockTable(s)];
  return { tables, refCounts: Array.from({ length: numBlocks }, (_, b) => a.refCount(b)), free: a.numFree() };
}

function allocatorHint(op: Op, prev: AllocState, e: AllocState, g: AllocState): string {
  const policy = ' Policy: free blocks are a queue (take from the front; a block whose count drops to 0 goes to the back; free() releases a table from its last block to its first).';
  const order = 'The right number of fresh blocks, but not the right ones: check the order of your free list.';
  if (op.op === 'fork') {
    return 'fork shares the parent\'s blocks: the child\'s table is a copy of the parent\'s, and each of those blocks gets one more reference (nothing is taken from the free list).' + policy;
  }
  if (op.op === 'append') {
    const before = prev.tables[op.seq] ?? [];
    const et = e.tables[op.seq] ?? [];
    const gt = Array.isArray(g.tables[op.seq]) ? g.tables[op.seq] : [];
    if (et.length !== gt.length) return 'append adds blocks only when the tokens spill past the last block: ceil((tokens so far + new) / blockSize) blocks in all.' + policy;
    const i = et.findIndex((b, k) => b !== gt[k]);
    if (i >= 0 && i < before.length && et[i] !== before[i] && gt[i] === before[i]) {
      return 'the new tokens land in a block another sequence also holds (ref count > 1): take a fresh block, drop one reference from the shared one and put the fresh one in its place (copy-on-write).' + policy;
    }
    if (i >= 0 && i < before.length && et[i] === before[i] && gt[i] !== before[i]) {
      return 'copy-on-write only for the shared blocks the new tokens land in (and only while shared: ref count > 1); keep the others.' + policy;
    }
    return (i >= 0 && et[i] !== before[i] && gt[i] !== before[i] ? `${order} ` : '') + 'copy-on-write for a shared block the new tokens land in comes first, then new blocks at the end.' + policy;
  }
  if (op.op === 'free') return 'free drops one reference from every block of the table; a block goes back to the free list only when its count reaches 0.' + policy;
  const gt = g.tables[op.seq];
  if (Array.isArray(gt) && gt.length === (e.tables[op.seq] ?? []).length) return `${order} allocate takes its blocks from the front, each with ref count 1.` + policy;
  return 'allocate takes ceil(tokens / blockSize) blocks from the front of the free list, each with ref count 1.' + policy;
}

async function checkAllocator(id: string, fn: unknown): Promise<Verdict> {
  if (typeof fn !== 'function') return failed(id, 0, '-', '-', 'a function', typeof fn, 'pass your factory itself, not an allocator');
  const cases = allocatorCases();
  for (let ci = 0; ci < cases.length; ci++) {
    const c = cases[ci];
    const ref = referenceAllocator(c.numBlocks, c.blockSize);
    let mine: Allocator;
    try {
      mine = (fn as AllocatorFactory)(c.numBlocks, c.blockSize);
    } catch (e) {
      return failed(id, ci + 1, c.name, `(${c.numBlocks}, ${c.blockSize})`, 'an allocator', `threw: ${e instanceof Error ? e.message : String(e)}`, 'your factory threw');
    }
    const live: number[] = [];
    let prev = stateOf(ref, live, c.numBlocks);
    for (let k = 0; k < c.ops.length; k++) {
      const op = c.ops[k];
      const input = `${c.numBlocks} blocks of ${c.blockSize}; ops ${k > 6 ? '... ' : ''}${c.ops.slice(Math.max(0, k - 6), k + 1).map(showOp).join(', ')} (the last one went wrong)`;
      apply(ref, op);
      if (op.op === 'allocate') live.push(op.seq);
      if (op.op === 'fork') live.push(op.child);
      if (op.op === 'free') live.splice(live.indexOf(op.seq), 1);
      const e = stateOf(ref, live, c.numBlocks);
      let g: AllocState;
      try {
        apply(mine, op);
        g = stateOf(mine, live, c.numBlocks);
      } catch (err) {
        return failed(id, ci + 1, c.name, input, 'no error', `threw: ${err instanceof Error ? err.message : String(err)}`, 'your allocator threw on this operation');
      }
      if (sameValue<AllocState>()(e, g) === null) {
        prev = e;
        continue;
      }
      // show the part that differs
      const seqDiff = live.find((s) => sameValue<number[]>()(e.tables[s], g.tables[s]) !== null);
      const [what, ev, gv] =
        seqDiff !== undefined
          ? [`block table of sequence ${seqDiff}`, short(e.tables[seqDiff], 16), short(g.tables[seqDiff], 16)]
          : e.free !== g.free
            ? ['free blocks', String(e.free), String(g.free)]
            : ['ref counts by block', short(e.refCounts, 16), short(g.refCounts, 16)];
      return failed(id, ci + 1, c.name, input, `${what}: ${ev}`, `${what}: ${gv}`, allocatorHint(op, prev, e, g));
    }
  }
  return { id, passed: true, cases: cases.length };
}

// ---- 3. one scheduler step

/** A sequence as the scheduler step sees it: tokens so far, and how many of them are in the cache. */
export interface StepSeq {
  id: number;
  numTokens: number;
  numComputed: number;
}

/** The state before a step: running sequences (oldest admission first, holding ceil(numComputed / blockSize) blocks each) and the waiting queue. */
export interface StepState {
  running: StepSeq[];
  waiting: StepSeq[];
  numFreeBlocks: number;
  blockSize: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
}

/** What the step decides: [sequence id, tokens to compute] in order, then who was preempted and who admitted. */
export interface StepDecision {
  scheduled: [number, number][];
  preempted: number[];
  admitted: number[];
}

function scheduleReference(s: StepState): StepDecision {
  const held = s.running.reduce((a, q) => a + Math.ceil(q.numComputed / s.blockSize), 0);
  const numBlocks = held + s.numFreeBlocks;
  const config = resolveEngineConfig(
    { blockSize: s.blockSize, numBlocks: Math.max(1, numBlocks), maxNumSeqs: s.maxNumSeqs, maxNumBatchedTokens: s.maxNumBatchedTokens, enablePrefixCaching: false, maxModelLen: 4096 },
    4096,
  );
  const bm = new BlockManager({ numBlocks: Math.max(1, numBlocks), blockSize: s.blockSize, enablePrefixCaching: false });
  if (numBlocks === 0) bm.freeBlockIds.clear(); // a pool with nothing free and nothing held
  const sched = new Scheduler(config, bm);
  const ids = new Map<Sequence, number>();
  for (const q of s.running) {
    const seq = seqOf(q.numTokens);
    bm.allocate(seq, q.numComputed);
    seq.numComputedTokens = q.numComputed;
    seq.status = 'running';
    sched.running.push(seq);
    ids.set(seq, q.id);
  }
  for (const q of s.waiting) {
    const seq = seqOf(q.numTokens);
    sched.add(seq);
    ids.set(seq, q.id);
  }
  const out = sched.schedule();
  return {
    scheduled: out.scheduled.map((e) => [ids.get(e.seq)!, e.numNewTokens]),
    preempted: out.preempted.map((q) => ids.get(q)!),
    admitted: out.admitted.map((q) => ids.get(q)!),
  };
}

function scheduleCases(): Case<StepState>[] {
  const base = { blockSize: 4, maxNumSeqs: 4, maxNumBatchedTokens: 16 };
  const cases: Case<StepState>[] = [
    { name: 'edge: nothing to do', input: { ...base, running: [], waiting: [], numFreeBlocks: 8 } },
    { name: 'two decodes, then a prompt chunked to the budget left', input: { ...base, running: [{ id: 0, numTokens: 9, numComputed: 8 }, { id: 1, numTokens: 6, numComputed: 5 }], waiting: [{ id: 2, numTokens: 30, numComputed: 0 }], numFreeBlocks: 8 } },
    { name: 'a running prompt continues with its next chunk', input: { ...base, running: [{ id: 0, numTokens: 40, numComputed: 16 }], waiting: [{ id: 1, numTokens: 3, numComputed: 0 }], numFreeBlocks: 10 } },
    { name: 'edge: no free block for a decode: the newest is preempted, none admitted', input: { ...base, running: [{ id: 0, numTokens: 9, numComputed: 8 }, { id: 1, numTokens: 5, numComputed: 4 }], waiting: [{ id: 2, numTokens: 2, numComputed: 0 }], numFreeBlocks: 0 } },
    { name: 'edge: the only running sequence preempts itself', input: { ...base, running: [{ id: 0, numTokens: 9, numComputed: 8 }], waiting: [], numFreeBlocks: 0 } },
    { name: 'edge: the head of the queue does not fit: nobody behind it jumps the queue', input: { ...base, running: [], waiting: [{ id: 0, numTokens: 16, numComputed: 0 }, { id: 1, numTokens: 2, numComputed: 0 }], numFreeBlocks: 3 } },
    { name: 'edge: every seat taken', input: { ...base, maxNumSeqs: 2, running: [{ id: 0, numTokens: 3, numComputed: 2 }, { id: 1, numTokens: 3, numComputed: 2 }], waiting: [{ id: 2, numTokens: 2, numComputed: 0 }], numFreeBlocks: 8 } },
    { name: 'edge: a budget of one token', input: { ...base, maxNumBatchedTokens: 1, running: [{ id: 0, numTokens: 20, numComputed: 4 }], waiting: [{ id: 1, numTokens: 2, numComputed: 0 }], numFreeBlocks: 8 } },
  ];
  const rng = new Rng(5_002);
  const int = (lo: number, hi: number) => lo + Math.floor(rng.next() * (hi - lo + 1));
  for (let i = 0; i < 40; i++) {
    const blockSize = [2, 4, 8][int(0, 2)];
    const maxNumSeqs = int(1, 6);
    const running: StepSeq[] = Array.from({ length: int(0, maxNumSeqs) }, (_, k) => {
      const numTokens = int(2, 60);
      return { id: k, numTokens, numComputed: rng.next() < 0.6 ? numTokens - 1 : int(1, numTokens - 1) };
    });
    const waiting: StepSeq[] = Array.from({ length: int(0, 4) }, (_, k) => ({ id: 100 + k, numTokens: int(1, 60), numComputed: 0 }));
    cases.push({ name: `seeded random ${i + 1}`, input: { blockSize, maxNumSeqs, maxNumBatchedTokens: int(2, 64), running, waiting, numFreeBlocks: int(0, 8) } });
  }
  return cases;
}

const describeState = (s: StepState) =>
  `running ${s.running.map((q) => `#${q.id} ${q.numComputed}/${q.numTokens}`).join(', ') || 'none'}; waiting ${s.waiting.map((q) => `#${q.id} ${q.numTokens} tokens`).join(', ') || 'none'}; ` +
  `${s.numFreeBlocks} free blocks of ${s.blockSize}, ${s.maxNumSeqs} seats, budget ${s.maxNumBatchedTokens} tokens (running: computed/tokens)`;

function scheduleHint(e: StepDecision, g: StepDecision): string {
  if (!g || typeof g !== 'object' || !Array.isArray(g.scheduled)) return 'return { scheduled: [id, tokens][], preempted: id[], admitted: id[] }.';
  if (sameValue()(e.preempted, g.preempted) !== null) {
    return 'when a running sequence needs blocks and too few are free, preempt the most recently admitted running sequence (the last of running), which gives back all its blocks, and retry; stop if the victim was the sequence itself.';
  }
  if (sameValue()(e.admitted, g.admitted) !== null) {
    return 'admit waiting sequences in order, while a seat (maxNumSeqs), some budget and ceil(chunk / blockSize) free blocks are left; stop at the first that does not fit, and admit nobody in a step that preempted.';
  }
  return 'running sequences first, oldest first: each computes min(tokens not yet computed, budget left) and needs ceil((computed + that) / blockSize) blocks in all; once the budget is spent nobody else is scheduled; admitted ones compute min(their tokens, budget left).';
}

// ---- the predict exercise's measurement

/**
 * The live-token share (tokens held / slots in used blocks, summed over steps) of serving
 * `requests` with the library's scheduler, all queued at once, no model: a step's computed tokens
 * are committed and a finished prompt or decode gets a placeholder token (the scheduler does not
 * look at token values). With the same config this is the engine run's liveTokenShare.
 */
export function measureLiveTokenShare(requests: readonly Pick<WorkloadRequest, 'promptTokenIds' | 'maxTokens'>[], config: EngineConfigInput): number {
  const c = resolveEngineConfig({ ...config, enablePrefixCaching: false }, 1024); // defaults as the engine gives them for the lessons' target (context 1024)
  const bm = new BlockManager({ numBlocks: c.numBlocks, blockSize: c.blockSize, enablePrefixCaching: false });
  const sched = new Scheduler(c, bm);
  for (const r of requests) sched.add(seqOf(r.promptTokenIds, r.maxTokens));
  let live = 0;
  let slots = 0;
  for (let steps = 0; sched.hasWork(); steps++) {
    if (steps > 100_000) throw new Error('measureLiveTokenShare: no progress');
    const plan = sched.schedule();
    sched.commit(plan.scheduled, new Map());
    const done: Sequence[] = [];
    for (const { seq } of plan.scheduled) {
      if (seq.numComputedTokens === seq.numTokens && seq.output.record({ token: 1, logprob: 0 }, 0).finished) done.push(seq);
    }
    for (const seq of done) {
      seq.status = 'finished';
      sched.remove(seq);
    }
    if (plan.scheduled.length === 0 && plan.preempted.length === 0) continue;
    live += bm.liveTokens(sched.running).liveTokens;
    slots += bm.numUsedBlocks * c.blockSize;
  }
  return slots > 0 ? live / slots : 1;
}

// ---- the exercises

const liveShare: BuildExercise<(lengths: number[], blockSize: number) => number> = {
  kind: 'build',
  id: 'l5.live-share',
  lesson: 5,
  title: 'the live-token share of a paged pool',
  signature: '(lengths: number[] /* tokens of each sequence */, blockSize: number) => number',
  run: (fn) =>
    runCases(fn, {
      id: 'l5.live-share',
      cases: liveShareCases,
      reference: ([lengths, bs]) => liveShareReference(lengths, bs),
      call: (f, [lengths, bs]) => (f as (l: number[], b: number) => number)(lengths, bs),
      compare: closeNumber(1e-9),
      describe: ([lengths, bs]) => `lengths = ${short(lengths, 12)}, blockSize = ${bs}`,
      hint: ([lengths, bs], e, g) => {
        const general = 'A sequence of n tokens holds ceil(n / blockSize) blocks; the share is all tokens over all slots of those blocks (blocks x blockSize), summed over sequences before dividing.';
        const close = (x: number) => typeof g === 'number' && Math.abs(g - x) <= 1e-9 * Math.max(1, Math.abs(x));
        if (bs > 1 && close(e * bs)) return `Tokens per block, not per slot: a block has blockSize slots. ${general}`;
        if (close(lengths.reduce((a, n) => a + n / (Math.ceil(n / bs) * bs), 0) / lengths.length)) return `That is the mean of per-sequence shares: a long sequence reserves more memory and must weigh more. ${general}`;
        if (typeof g === 'number' && g > 1) return `A share cannot exceed 1: a partly filled last block still takes a whole block (ceil, not floor). ${general}`;
        return general;
      },
    }),
};

const allocator: BuildExercise<AllocatorFactory> = {
  kind: 'build',
  id: 'l5.allocator',
  lesson: 5,
  title: 'a block allocator with ref counts and copy-on-write',
  signature:
    '(numBlocks: number, blockSize: number) => { allocate(seq, numTokens): void; append(seq, numNew): void; fork(parent, child): void; free(seq): void; blockTable(seq): number[]; refCount(block): number; numFree(): number }',
  run: (fn) => checkAllocator('l5.allocator', fn),
};

const scheduleStep: BuildExercise<(state: StepState) => StepDecision> = {
  kind: 'build',
  id: 'l5.schedule-step',
  lesson: 5,
  title: 'one scheduler step with a token budget',
  signature:
    '(state: { running: { id, numTokens, numComputed }[]; waiting: { id, numTokens, numComputed }[]; numFreeBlocks; blockSize; maxNumSeqs; maxNumBatchedTokens }) => { scheduled: [id, tokens][]; preempted: id[]; admitted: id[] }',
  run: (fn) =>
    runCases(fn, {
      id: 'l5.schedule-step',
      cases: scheduleCases,
      reference: scheduleReference,
      compare: (e, g) => {
        const why = sameValue<StepDecision>()(e, g && typeof g === 'object' ? { scheduled: g.scheduled, preempted: g.preempted, admitted: g.admitted } : g);
        return why === null ? null : `${why} ${scheduleHint(e, g)}`;
      },
      describe: describeState,
    }),
};

const predictLiveShare: PredictExercise & { measure: (requests: readonly Pick<WorkloadRequest, 'promptTokenIds' | 'maxTokens'>[], config: EngineConfigInput) => number } = {
  kind: 'predict',
  id: 'l5.predict-live-share',
  lesson: 5,
  title: 'live-token share with blocks of 64',
  question: "The memory comparison above measured the share of reserved KV slots holding tokens with blocks of 16. Serve the same workload with blocks of 64 tokens (the same pool memory): what share now (a number between 0 and 1)?",
  tolerance: 0.1,
  measure: measureLiveTokenShare,
};

/** Lesson 5's exercises, one field per exercise, in the order the notebook poses them. */
export const lesson5 = { liveShare, allocator, scheduleStep, predictLiveShare };

/** Lesson 5's exercises, in the order the notebook poses them. */
export const lesson5Exercises: Exercise[] = Object.values(lesson5);
