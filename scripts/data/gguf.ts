// Exports data/models/{target,draft} and the extra drafts (draft-*) to GGUF and checks them against the HF oracle with llama.cpp.
//
//   npm run data:gguf                 # F32 GGUF files in data/gguf/ (git-ignored, ~70 MB)
//   npm run data:gguf -- --type F16   # half-size files
//
// Writes data/golden/llamacpp.json: per model and prompt, how many of the 64 greedy tokens equal
// the HF-transformers continuation, and whether llama.cpp tokenizes the prompt text identically.
import { readFileSync, writeFileSync } from 'node:fs';

import { exportGGUF } from '../../lib/formats/gguf';
import { extraDrafts } from '../../lib/model/load';
import { llamaCppGreedy } from '../../lib/oracle/llamacpp';

interface Golden {
  prompts: { name: string; text: string; ids: number[] }[];
  models: Record<string, { entries: { continuation: number[]; margins: number[] }[] }>;
}

async function main(): Promise<void> {
  const type = (process.argv.includes('--type') ? process.argv[process.argv.indexOf('--type') + 1] : 'F32').toUpperCase();
  if (type !== 'F32' && type !== 'F16') throw new Error(`--type must be F32 or F16, got ${type}`);
  const golden = JSON.parse(readFileSync('data/golden/golden.json', 'utf8')) as Golden;
  const report: Record<string, unknown> = {
    date: new Date().toISOString(),
    nodeLlamaCpp: JSON.parse(readFileSync('node_modules/node-llama-cpp/package.json', 'utf8')).version, // package.json is not exported
    gguf: type,
    settings: 'CPU, F32 KV cache, flash attention off, greedy (temperature 0), EOT yielded',
    models: {},
  };
  for (const name of ['target', 'draft', ...extraDrafts()]) {
    const path = `data/gguf/${name}-${type.toLowerCase()}.gguf`;
    const t0 = Date.now();
    const bytes = exportGGUF(`data/models/${name}`, path, { type });
    console.log(`${path}: ${(bytes / 1e6).toFixed(1)} MB in ${Date.now() - t0} ms`);
    const results = await llamaCppGreedy(path, golden.prompts, 64);
    const perPrompt = results.map((r, i) => {
      const gold = golden.models[name].entries[i].continuation;
      let agree = 0;
      while (agree < gold.length && r.continuation[agree] === gold[agree]) agree++;
      return {
        prompt: golden.prompts[i].name,
        promptTokens: golden.prompts[i].ids.length,
        tokenizationEqual: JSON.stringify(r.tokenized) === JSON.stringify(golden.prompts[i].ids),
        agreeingPrefix: agree,
        firstMismatchMargin: agree < gold.length ? golden.models[name].entries[i].margins[agree] : null,
      };
    });
    const agreeing = perPrompt.reduce((s, p) => s + p.agreeingPrefix, 0);
    const summary = {
      file: path,
      bytes,
      promptsIdentical: perPrompt.filter((p) => p.agreeingPrefix === 64).length,
      prompts: perPrompt.length,
      tokensAgreeing: agreeing,
      tokens: perPrompt.length * 64,
      tokenizationIdentical: perPrompt.filter((p) => p.tokenizationEqual).length,
      seconds: (Date.now() - t0) / 1000,
      perPrompt,
    };
    (report.models as Record<string, unknown>)[name] = summary;
    console.log(`${name}: ${summary.promptsIdentical}/${summary.prompts} continuations identical, ${agreeing}/${summary.tokens} tokens, tokenization identical ${summary.tokenizationIdentical}/${summary.prompts}`);
  }
  writeFileSync(`data/golden/llamacpp${type === 'F32' ? '' : '-f16'}.json`, JSON.stringify(report, null, 2) + '\n');
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
