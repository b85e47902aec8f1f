// The captured path in a browser page (test/gpu.browser.test.ts): the same lib/gpu code as in
// Node, on the page's navigator.gpu. Fetches the draft model and the HF oracle's golden file,
// decodes one golden prompt greedily, and exposes the result as window.__capturedRun().
import { acquireGpu } from '../../lib/gpu/device';
import { contiguousTables, GpuLlama } from '../../lib/gpu/llama';
import { configFromHF } from '../../lib/model/config';
import { fetchDraft } from '../browser/fetched';

async function capturedRun(promptIndex: number, steps: number) {
  const { config, weights: source, golden } = await fetchDraft();
  const ctx = await acquireGpu();
  const m = await GpuLlama.create(ctx, configFromHF(config), source, 'draft', { maxTokens: 64, maxSeqs: 1 });
  try {
    const prompt = golden.prompts[promptIndex];
    const table = contiguousTables(m, 1)[0];
    const got: number[] = [];
    let r = await m.step([{ tokens: prompt.ids, start: 0, blockTable: table, logits: 1 }], 'ids');
    got.push(r.ids[0]);
    for (let k = 1; k < steps; k++) {
      r = await m.step([{ tokens: [got[k - 1]], start: prompt.ids.length + k - 1, blockTable: table, logits: 1 }], 'ids');
      got.push(r.ids[0]);
    }
    return { adapter: ctx.info.adapter, prompt: prompt.name, got, want: golden.models.draft.entries[promptIndex].continuation.slice(0, steps), errors: ctx.errors };
  } finally {
    m.dispose();
    ctx.destroy();
  }
}

(globalThis as { __capturedRun?: typeof capturedRun }).__capturedRun = capturedRun;
