// Checking the runtime against the HF-transformers oracle in data/golden (lesson 0: "our models and
// our oracles"): per golden prompt, greedy-decode with a contiguous KV cache, compare the logits of
// the prompt's last position and of the first 8 greedy steps with the oracle's, and count how many
// of the 64 greedy tokens agree. Used by the tests (CPU) and by bench/oracle.ts (any backend).
import * as fs from 'fs';

import { ContiguousKVCache } from './kv/contiguous';
import type { LlamaModel } from './model/llama';
import { SafetensorsFile } from './model/safetensors';
import { argmax } from './sampling';

/** data/golden/golden.json, as far as the check needs it. */
export interface GoldenFile {
  versions: Record<string, string>;
  prompts: { name: string; text: string; ids: number[] }[];
  models: Record<string, { entries: { name: string; logits_key: string; continuation: number[]; margins: number[] }[] }>;
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
}

export function loadGoldenFile(path = 'data/golden/golden.json'): GoldenFile {
  return JSON.parse(fs.readFileSync(path, 'utf8')) as GoldenFile;
}

/** Greedy-decodes every golden prompt with `model` and compares it with the oracle (see file comment). */
export async function checkAgainstOracle(
  model: LlamaModel,
  which: 'target' | 'draft',
  opts: { golden?: GoldenFile; logitsFile?: string; steps?: number; rows?: number; onPrompt?: (i: number) => void } = {},
): Promise<OracleReport> {
  const golden = opts.golden ?? loadGoldenFile();
  const steps = opts.steps ?? 64;
  const rowsPerPrompt = opts.rows ?? 9;
  const oracle = SafetensorsFile.open(opts.logitsFile ?? `data/golden/${which}.logits.safetensors`);
  const report: OracleReport = { model: which, prompts: golden.prompts.length, rows: 0, maxAbsError: 0, worstAt: '', tokensAgreeing: 0, tokens: golden.prompts.length * steps, ties: [], failures: [] };
  try {
    for (let p = 0; p < golden.prompts.length; p++) {
      opts.onPrompt?.(p);
      const prompt = golden.prompts[p];
      const entry = golden.models[which].entries[p];
      const ref = oracle.get(entry.logits_key); // [9, V]
      const V = ref.shape[1];
      const cache = new ContiguousKVCache(model.kvShape, 1);
      try {
        let logits = model.forward([prompt.ids], cache); // [1, 1, V]
        for (let step = 0; step < steps; step++) {
          const row = (await logits.data()) as Float32Array;
          logits.dispose();
          if (step < rowsPerPrompt) {
            let err = 0;
            const want = ref.data.subarray(step * V, (step + 1) * V);
            for (let i = 0; i < V; i++) err = Math.max(err, Math.abs(row[i] - want[i]));
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
          logits = model.forward([[next]], cache);
        }
      } finally {
        cache.dispose();
      }
    }
  } finally {
    oracle.close();
  }
  return report;
}
