// llama.cpp (through node-llama-cpp) as an independent CPU oracle: load one of our GGUF exports,
// tokenize, and decode greedily. Lesson 0 ("our models and our oracles") compares it with HF.
// node-llama-cpp is ESM-only: it is loaded with a real dynamic import (kept by module node16).
import type { Llama, LlamaModel, Token } from 'node-llama-cpp' with { 'resolution-mode': 'import' };

/** What llama.cpp produced for one prompt. */
export interface LlamaCppResult {
  /** llama.cpp's own tokenization of `text` (special tokens parsed), when a text was given */
  tokenized?: number[];
  /** greedy continuation of `ids` */
  continuation: number[];
}

let llamaPromise: Promise<Llama> | null = null;

/** The process-wide llama.cpp instance: CPU build, never compiled or downloaded at run time. */
export function getLlamaCpp(): Promise<Llama> {
  llamaPromise ??= import('node-llama-cpp').then(({ getLlama }) => getLlama({ gpu: false, build: 'never', logLevel: 'error' as never }));
  return llamaPromise;
}

/**
 * Greedy-decodes each prompt's ids with llama.cpp. The KV cache is F32 and flash attention off so
 * that only the arithmetic order differs from an fp32 reference; end-of-text tokens are yielded
 * (not treated as a stop) so continuations have exactly `maxTokens` ids.
 */
export async function llamaCppGreedy(
  modelPath: string,
  prompts: { ids: number[]; text?: string }[],
  maxTokens: number,
): Promise<LlamaCppResult[]> {
  const llama = await getLlamaCpp();
  const model: LlamaModel = await llama.loadModel({ modelPath });
  const longest = Math.max(...prompts.map((p) => p.ids.length)) + maxTokens;
  const context = await model.createContext({
    contextSize: Math.min(model.trainContextSize, Math.max(256, longest)),
    batchSize: Math.min(model.trainContextSize, Math.max(256, longest)),
    threads: llama.cpuMathCores, // more threads than cores makes llama.cpp spin and crawl
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  });
  try {
    const sequence = context.getSequence();
    const results: LlamaCppResult[] = [];
    for (const p of prompts) {
      await sequence.clearHistory();
      const continuation: number[] = [];
      for await (const token of sequence.evaluate(p.ids as Token[], { temperature: 0, yieldEogToken: true })) {
        continuation.push(token as number);
        if (continuation.length >= maxTokens) break;
      }
      const tokenized = p.text === undefined ? undefined : (model.tokenize(p.text, true) as number[]);
      results.push({ tokenized, continuation });
    }
    return results;
  } finally {
    await context.dispose();
    await model.dispose();
  }
}
