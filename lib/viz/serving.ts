/**
 * Views of the engine's per-step metrics for the lessons: the scheduler timeline (a Gantt of
 * prefill chunks, decodes, waits and preemptions per request) and the block-table view
 * (logical -> physical blocks with reference counts). Plain data in, a Figure or table rows out.
 *
 * Lesson: 5 ("continuous batching").
 */
import type { BlockTableSnapshot, StepMetrics } from '../engine/metrics';
import { timelineChart, type ChartOptions, type Figure, type Span } from './figures';

/** Options of schedulerSpans. */
export interface SchedulerSpanOptions {
  /** arrival time per request id (engine clock): draws 'waiting' from arrival to first schedule */
  arrivals?: ReadonlyMap<string, number>;
  /** x axis: the engine clock (default) or the step index */
  axis?: 'time' | 'step';
}

/**
 * The spans of a scheduler timeline (lesson 5): per request, one span per prefill chunk, runs of
 * consecutive decode steps merged into one span, 'preempted' from a preemption until the
 * request is scheduled again, and 'waiting' from arrival to its first step (with `arrivals`).
 */
export function schedulerSpans(steps: readonly StepMetrics[], options: SchedulerSpanOptions = {}): Span[] {
  const byStep = options.axis === 'step';
  const t0 = (s: StepMetrics) => (byStep ? s.step : s.startMs);
  const t1 = (s: StepMetrics) => (byStep ? s.step + 1 : s.endMs);
  const spans: Span[] = [];
  const decodeRun = new Map<string, Span & { lastStep: number }>();
  const preemptedAt = new Map<string, number>();
  const seen = new Set<string>();
  // the engine reports preemptions by sequence id; map them to request ids from the entries
  const requestOf = new Map<number, string>();
  for (const s of steps) for (const e of [...s.prefills, ...s.decodes]) requestOf.set(e.seqId, e.requestId);

  const closeDecode = (req: string) => {
    const run = decodeRun.get(req);
    if (!run) return;
    const { lastStep: _lastStep, ...span } = run;
    spans.push({ ...span, label: `${span.label} steps` });
    decodeRun.delete(req);
  };
  for (const s of steps) {
    const scheduled = [...s.prefills.map((e) => ({ e, kind: 'prefill chunk' })), ...s.decodes.map((e) => ({ e, kind: 'decode' }))];
    for (const { e, kind } of scheduled) {
      const req = e.requestId;
      if (!seen.has(req)) {
        seen.add(req);
        const arrival = options.arrivals?.get(req);
        if (arrival !== undefined && !byStep && s.startMs > arrival)
          spans.push({ lane: req, start: arrival, end: s.startMs, kind: 'waiting', label: 'queued' });
      }
      const pre = preemptedAt.get(req);
      if (pre !== undefined) {
        spans.push({ lane: req, start: pre, end: t0(s), kind: 'preempted (waiting to recompute)', label: 'preempted' });
        preemptedAt.delete(req);
      }
      if (kind === 'decode') {
        const run = decodeRun.get(req);
        if (run && run.lastStep === s.step - 1) {
          run.end = t1(s);
          run.lastStep = s.step;
          run.label = String(Number(run.label) + 1);
        } else {
          closeDecode(req);
          decodeRun.set(req, { lane: req, start: t0(s), end: t1(s), kind: 'decode', label: '1', lastStep: s.step });
        }
      } else {
        closeDecode(req);
        spans.push({ lane: req, start: t0(s), end: t1(s), kind, label: `tokens ${e.start}..${e.start + e.numTokens - 1}` });
      }
    }
    for (const seqId of s.preempted) {
      const req = requestOf.get(seqId);
      if (req === undefined) continue;
      closeDecode(req);
      preemptedAt.set(req, t0(s));
    }
  }
  for (const req of [...decodeRun.keys()]) closeDecode(req);
  return spans;
}

/** A Gantt chart of the scheduler (lesson 5): one row per request, coloured by what it did. */
export function schedulerTimelineChart(steps: readonly StepMetrics[], o: ChartOptions & SchedulerSpanOptions = {}): Figure {
  const spans = schedulerSpans(steps, o);
  const lanes = new Set(spans.map((s) => s.lane)).size;
  const fig = timelineChart(spans, {
    height: Math.max(260, 90 + 22 * lanes),
    ...o,
    x: { title: o.axis === 'step' ? 'engine step' : 'engine clock (ms)', ...o.x },
  });
  // fixed colours per kind, the same in every chart of a lesson
  const colours: Record<string, string> = {
    'prefill chunk': '#ff7f0e',
    decode: '#1f77b4',
    waiting: '#d9d9d9',
    'preempted (waiting to recompute)': '#d62728',
  };
  for (const t of fig.data) {
    if (typeof t.name === 'string' && colours[t.name]) t.marker = { color: colours[t.name] };
    // labels inside their bar, hidden when the bar is too short for them
    t.textposition = 'inside';
    t.insidetextanchor = 'middle';
  }
  fig.layout.uniformtext = { mode: 'hide', minsize: 6 };
  return fig;
}

/**
 * Block tables as table rows (lesson 5): one row per running sequence, one column per logical
 * block, each cell "physical id" with "xN" when N sequences share it and "#" when the prefix
 * cache knows it (pass `cached`, the ids of blocks holding a hash).
 */
export function blockTableRows(
  tables: readonly BlockTableSnapshot[],
  cached: ReadonlySet<number> = new Set(),
): Record<string, string | number>[] {
  const width = Math.max(0, ...tables.map((t) => t.blocks.length));
  return tables.map((t) => {
    const row: Record<string, string | number> = { request: t.requestId, seq: t.seqId, tokens: t.numTokens };
    for (let i = 0; i < width; i++) {
      const id = t.blocks[i];
      row[`logical ${i}`] = id === undefined ? '' : `${id}${t.refCounts[i] > 1 ? ` x${t.refCounts[i]}` : ''}${cached.has(id) ? ' #' : ''}`;
    }
    return row;
  });
}
