// Our GGUF export of the shipped models, loaded by llama.cpp (node-llama-cpp, CPU): it tokenizes every
// golden prompt as HF does and its 64-token greedy continuation equals the HF-transformers oracle.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

import { exportGGUF } from '../lib/formats/gguf';
import { extraDrafts } from '../lib/model/load';
import { getLlamaCpp, llamaCppGreedy } from '../lib/oracle/llamacpp';
import { agreement, loadGolden } from './golden';

const golden = loadGolden();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gguf-'));
afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  await (await getLlamaCpp()).dispose();
});

describe.each(['target', 'draft', ...extraDrafts()])('GGUF export of data/models/%s in llama.cpp', (name) => {
  it('tokenizes and greedy-decodes exactly like the HF oracle on every golden prompt', async () => {
    const file = path.join(dir, `${name}.gguf`);
    const bytes = exportGGUF(`data/models/${name}`, file);
    expect(bytes).toBe(fs.statSync(file).size);
    const results = await llamaCppGreedy(file, golden.prompts, 64);
    const ties: string[] = [];
    results.forEach((r, i) => {
      const p = golden.prompts[i];
      expect(r.tokenized, `${p.name} tokenization`).toEqual(p.ids);
      const a = agreement(r.continuation, golden.models[name].entries[i]);
      if (a.tie) ties.push(`${p.name}@${a.prefix}`);
      else expect(a.prefix, `${p.name}: llama.cpp diverges from HF at token ${a.prefix}`).toBe(64);
    });
    if (ties.length) console.log(`${name}: fp32 ties accepted at ${ties.join(', ')}`);
    expect(ties.length).toBeLessThanOrEqual(1);
  }, 300_000);
});
