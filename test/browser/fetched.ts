// What the browser tests' pages fetch from the repository (test/browser.helpers.ts serves it): the
// draft model's config and weights, and the HF oracle's golden file.
import { SafetensorsFile } from '../../lib/formats/safetensors';
import type { WeightSource } from '../../lib/model/weights';

export interface Golden {
  prompts: { name: string; ids: number[] }[];
  models: Record<string, { entries: { continuation: number[] }[] }>;
}

/** The draft's HF config.json, its weights (read from the fetched safetensors) and golden.json. */
export async function fetchDraft(): Promise<{ config: unknown; weights: WeightSource; golden: Golden }> {
  const get = (url: string) => fetch(url).then((r) => (r.ok ? r : Promise.reject(new Error(`${url}: HTTP ${r.status}`))));
  const [config, bytes, golden] = await Promise.all([
    get('/data/models/draft/config.json').then((r) => r.json() as Promise<unknown>),
    get('/data/models/draft/model.safetensors').then((r) => r.arrayBuffer()),
    get('/data/golden/golden.json').then((r) => r.json() as Promise<Golden>),
  ]);
  const file = SafetensorsFile.fromBytes(new Uint8Array(bytes), 'draft (fetched)');
  return { config, weights: { description: 'draft (fetched)', has: (n) => file.entries.has(n), get: (n) => file.get(n) }, golden };
}
