// Checking the runtime against the HF-transformers oracle in data/golden (lesson 0: "our models and
// our oracles"): per golden prompt, greedy-decode with a contiguous KV cache, compare the logits of
// the prompt's last position and of the first 8 greedy steps with the oracle's, and count how many
// of the 64 greedy tokens agree. Used by the tests (CPU) and by bench/oracle.ts (any backend).
import * as fs from 'fs';

import { ContiguousKVCache } from '../kv/contiguous';
import type { LlamaModel } from '../model/llama';
import { SafetensorsFile } from '../formats/safetensors';
import { argmax } from '../generate/sampling';

/** data/golden/golden.json, as far as the check needs it. */
export interface GoldenFile {
  versions: Record<string, string>;
  prompts: { name: string; text: string; ids: number[] }[];
  models: Record<string, { entries: GoldenEntry[] }>;
}

export interface GoldenEntry {
  name: string;
  logits_key: string;
  continuation: number[];
  margins: number[];
  /** per logit row: the oracle's 50 largest logits and the row's logsumexp */
  top50: { ids: number[]; logits: number[]; logsumexp: number }[];
}

/** An oracle margin (top1 - top2 logit) below this is a tie: a different argmax there is no error. */
export const ORACLE_TIE = 1e-4;

export interface OracleReport {
  model: string;
  prompts: number;
  /** logit rows compared (prompt's last position + 8 greedy steps per prompt, before any divergence) */
  rows: number;
  maxAbsError: number;
  worstAt: string;
  tokensAgreeing: number;
  tokens: number;
  /** divergences where the oracle's margin was below ORACLE_TIE */
  ties: string[];
  /** real divergences */
  failures: string[];
  /** 'full': every logit of each row (data/golden/*.logits.safetensors); 'top50': the oracle's top-50 logits and logsumexp (golden.json) */
  compared: 'full' | 'top50';
}

/** Largest |ours - oracle| over a row: all V logits, or the oracle's top 50 plus the logsumexp. */
function rowError(row: Float32Array, full: Float32Array | null, top: GoldenEntry['top50'][number]): number {
  let err = 0;
  if (full) {
    for (let i = 0; i < row.length; i++) err = Math.max(err, Math.abs(row[i] - full[i]));
    return err;
  }
  top.ids.forEach((id, k) => (err = Math.max(err, Math.abs(row[id] - top.logits[k]))));
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  return Math.max(err, Math.abs(max + Math.log(sum) - top.logsumexp));
}

export function loadGoldenFile(path = 'data/golden/golden.json'): GoldenFile {
  return JSON.parse(fs.readFileSync(path, 'utf8')) as GoldenFile;
}

/**
 * One sequence decoded a token at a time, whatever runs it: `start` feeds the prompt and returns
 * the last position's logits [V], `next` feeds one token; `end` frees the sequence.
 */
export interface OracleDecoder {
  vocabSize: number;
  start(prompt: readonly number[]): Promise<Float32Array>;
  next(token: number): Promise<Float32Array>;
  end(): void;
}

// the tfjs model with a contiguous cache, as an OracleDecoder
function tfjsDecoder(model: LlamaModel): OracleDecoder {
  const cache = new ContiguousKVCache(model.kvShape, 1);
  const read = async (logits: ReturnType<LlamaModel['forward']>) => {
    const row = (await logits.data()) as Float32Array;
    logits.dispose();
    return row;
  };
  return {
    vocabSize: model.config.vocabSize,
    start: (prompt) => read(model.forward([prompt], cache)),
    next: (token) => read(model.forward([[token]], cache)),
    end: () => cache.dispose(),
  };
}

/** Greedy-decodes every golden prompt with `model` and compares it with the oracle (see file comment). */
export async function checkAgainstOracle(
  model: LlamaModel | OracleDecoder,
  which: string, // a model of the golden file: target, draft, or an extra draft (draft-*)
  opts: { golden?: GoldenFile; logitsFile?: string; compare?: 'full' | 'top50'; prompts?: number[]; steps?: number; rows?: number; onPrompt?: (i: number) => void } = {},
): Promise<OracleReport> {
  const golden = opts.golden ?? loadGoldenFile();
  const steps = opts.steps ?? 64;
  const rowsPerPrompt = opts.rows ?? 9;
  const compared = opts.compare ?? 'full';
  const oracle = compared === 'full' ? SafetensorsFile.open(opts.logitsFile ?? `data/golden/${which}.logits.safetensors`) : null;
  if (!golden.models[which]) throw new Error(`checkAgainstOracle: the golden file has no model '${which}' (it has ${Object.keys(golden.models).join(', ')})`);
  const promptIndices = opts.prompts ?? golden.prompts.map((_, i) => i);
  const report: OracleReport = { model: which, prompts: promptIndices.length, rows: 0, maxAbsError: 0, worstAt: '', tokensAgreeing: 0, tokens: promptIndices.length * steps, ties: [], failures: [], compared };
  try {
    for (const p of promptIndices) {
      await new Promise((resolve) => setTimeout(resolve, 0)); // let timers and I/O run between prompts (progress bars, test runners)
      opts.onPrompt?.(p);
      const prompt = golden.prompts[p];
      const entry = golden.models[which].entries[p];
      const ref = oracle?.get(entry.logits_key) ?? null; // [9, V]
      const decoder = 'forward' in model ? tfjsDecoder(model) : model;
      const V = decoder.vocabSize;
      try {
        let row = await decoder.start(prompt.ids);
        for (let step = 0; step < steps; step++) {
          if (step < rowsPerPrompt) {
            const err = rowError(row, ref ? ref.data.subarray(step * V, (step + 1) * V) : null, entry.top50[step]);
            report.rows++;
            if (err > report.maxAbsError) [report.maxAbsError, report.worstAt] = [err, `${prompt.name} row ${step}`];
          }
          const next = argmax(row);
          if (next !== entry.continuation[step]) {
            const where = `${prompt.name} step ${step} (oracle margin ${entry.margins[step].toExponential(2)})`;
            (entry.margins[step] < ORACLE_TIE ? report.ties : report.failures).push(where);
            break;
          }
          report.tokensAgreeing++;
          if (step === steps - 1) break;
          row = await decoder.next(next);
        }
      } finally {
        decoder.end();
      }
    }
  } finally {
    oracle?.close();
  }
  return report;
}
