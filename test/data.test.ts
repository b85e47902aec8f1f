// Shape of the committed model zoo (data/): what the lessons and other tests rely on. The files are
// produced on the GPU machine (scripts/train/train.py) and by scripts/data/*.ts; CI checks their
// shape and internal consistency, never re-creates them.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { configFromHF, llamaSizes } from '../lib/model/config';
import { extraDrafts } from '../lib/model/load';
import { listPresets, loadPreset } from '../lib/model/presets';
import { SafetensorsFile } from '../lib/formats/safetensors';
import { loadGolden } from './golden';

const golden = loadGolden();
const readJson = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8'));
const report = readJson('data/models/report.json');

function argmax(x: Float32Array): number {
  let b = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[b]) b = i;
  return b;
}

describe('corpus', () => {
  it('validation and test splits are committed and match the manifest', () => {
    const manifest = readJson('data/corpus/manifest.json');
    for (const split of ['validation', 'test']) {
      const body = fs.readFileSync(`data/corpus/${split}.txt`);
      expect(createHash('sha256').update(body).digest('hex'), split).toBe(manifest.splits[split].sha256);
    }
    expect(manifest.splits.train.chapters + manifest.splits.validation.chapters + manifest.splits.test.chapters).toBe(1189);
  });
});

describe.each(['target', 'draft', ...extraDrafts()])('data/models/%s', (name) => {
  const dir = `data/models/${name}`;
  const config = configFromHF(readJson(`${dir}/config.json`));

  it('is an HF Llama directory with BF16 weights', () => {
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
      expect(fs.existsSync(path.join(dir, f)), f).toBe(true);
    }
    expect(readJson(`${dir}/config.json`).architectures).toEqual(['LlamaForCausalLM']);
    const file = SafetensorsFile.open(`${dir}/model.safetensors`);
    const dtypes = new Set([...file.entries.values()].map((e) => e.dtype));
    file.close();
    expect([...dtypes]).toEqual(['BF16']);
  });

  it('has the sizes the issue asks for', () => {
    const params = llamaSizes(config).params;
    const extra = report.extra_drafts?.[name];
    expect(params).toBe(extra ? extra.params : report[name].params);
    if (extra) {
      // an extra draft: another shape (issue 2 sets `draft`'s), still a draft: fewer layers and parameters than the target
      const target = configFromHF(readJson('data/models/target/config.json'));
      expect(config.numLayers).toBe(extra.config.num_hidden_layers);
      expect(config.hiddenSize).toBe(extra.config.hidden_size);
      expect(config.numLayers).toBeLessThan(target.numLayers);
      expect(params).toBeLessThan(llamaSizes(target).params / 2);
      expect(config.vocabSize).toBe(target.vocabSize);
    } else if (name === 'target') {
      expect(params).toBeGreaterThan(10e6);
      expect(params).toBeLessThan(20e6);
      expect(config.numKvHeads).toBeLessThan(config.numHeads); // GQA
      expect(config.maxPositions).toBeGreaterThanOrEqual(1024);
    } else {
      expect(params).toBeGreaterThan(1e6);
      expect(params).toBeLessThan(3e6);
      expect(config.numLayers).toBe(2);
    }
  });

  it('golden logits: one [9, V] F32 block per prompt, consistent with the greedy continuation and top-50', () => {
    const file = SafetensorsFile.open(`data/golden/${name}.logits.safetensors`);
    const entries = golden.models[name].entries;
    expect(entries.length).toBe(golden.prompts.length);
    for (const e of entries) {
      expect(file.entries.get(e.logits_key)?.shape).toEqual([9, config.vocabSize]);
      const rows = file.get(e.logits_key).data;
      for (let s = 0; s < 9; s++) {
        const row = rows.subarray(s * config.vocabSize, (s + 1) * config.vocabSize);
        expect(argmax(row)).toBe(e.continuation[s]);
        expect(e.top50[s].ids[0]).toBe(e.continuation[s]);
        expect(row[e.top50[s].ids[10]]).toBeCloseTo(e.top50[s].logits[10], 4);
      }
      expect(e.continuation.length).toBe(64);
      expect(e.margins.length).toBe(64);
    }
    file.close();
  });

  it('perplexities are recorded for validation and test', () => {
    for (const split of ['validation', 'test'] as const) {
      const r = golden.models[name][split];
      expect(r.ppl).toBeGreaterThan(1);
      expect(r.ppl).toBeLessThan(100);
      expect(r.tokens).toBeGreaterThan(40_000);
    }
  });
});

describe('golden prompts and reports', () => {
  it('has ~20 prompts of mixed length, some >= 512 tokens, all fitting the context with 64 new tokens', () => {
    const lengths = golden.prompts.map((p) => p.ids.length);
    expect(lengths.length).toBeGreaterThanOrEqual(20);
    expect(lengths.filter((n) => n >= 512).length).toBeGreaterThanOrEqual(3);
    expect(Math.min(...lengths)).toBe(1);
    expect(Math.max(...lengths) + 64).toBeLessThanOrEqual(1024);
    expect(golden.versions.transformers).toMatch(/^\d/);
    expect(golden.versions.torch).toMatch(/^\d/);
  });

  it('the draft agrees with the target on >= 60% of greedy tokens', () => {
    expect(report.draft_agreement_teacher_forced_test.agreement).toBeGreaterThanOrEqual(0.6);
    expect(report.draft_agreement_on_target_greedy.agreement).toBeGreaterThanOrEqual(0.6);
    // a language model in its own right, though on-policy distillation can bring it level with the target
    expect(report.draft.test.ppl).toBeLessThan(1.5 * report.target.test.ppl);
  });

  it("the draft's on-policy stage raised its agreement with the target's own continuations", () => {
    const o = report.on_policy;
    expect(o.best_step).toBeGreaterThan(0);
    expect(o.best_step).toBeLessThanOrEqual(o.steps);
    expect(o.validation_after.agreement).toBeGreaterThan(o.validation_before.agreement);
    expect(o.validation_after.tokens_per_step['4']).toBeGreaterThan(o.validation_before.tokens_per_step['4']);
    // a replayed greedy speculative step emits between 1 and gamma + 1 tokens, more as gamma grows
    const tps = report.draft_agreement_on_target_greedy.tokens_per_step as Record<string, number>;
    const gammas = Object.keys(tps).map(Number).sort((a, b) => a - b);
    expect(gammas.length).toBeGreaterThan(3);
    gammas.forEach((g, i) => {
      expect(tps[g]).toBeGreaterThanOrEqual(1);
      expect(tps[g]).toBeLessThanOrEqual(g + 1);
      if (i > 0) expect(tps[g]).toBeGreaterThanOrEqual(tps[gammas[i - 1]]);
    });
  });

  it.each(extraDrafts())('extra draft %s: agrees with the target on >= 60% of greedy tokens, raised by its on-policy stage', (name) => {
    const e = report.extra_drafts[name];
    expect(e.agreement_teacher_forced_test.agreement).toBeGreaterThanOrEqual(0.6);
    expect(e.agreement_on_target_greedy.agreement).toBeGreaterThanOrEqual(0.6);
    expect(e.test.ppl).toBeLessThan(1.5 * report.target.test.ppl);
    expect(e.on_policy.validation_after.agreement).toBeGreaterThan(e.on_policy.validation_before.agreement);
    const logs = readJson('data/logs/training_logs.json');
    expect(logs[name].train.length).toBeGreaterThan(10);
    expect(logs[`${name}-on-policy`].train.length).toBeGreaterThan(10);
    expect(golden.models[name].entries.length).toBe(golden.prompts.length);
  });

  it('training logs hold loss curves for every model trained', () => {
    const logs = readJson('data/logs/training_logs.json');
    for (const key of Object.keys(logs).filter((k) => k !== 'chosen_target')) {
      expect(logs[key].train.length).toBeGreaterThan(10);
      expect(logs[key].validation.length).toBeGreaterThan(2);
      for (const p of logs[key].train) expect(Number.isFinite(p.loss)).toBe(true);
    }
  });

  it('llama.cpp agreement report covers both models', () => {
    const r = readJson('data/golden/llamacpp.json');
    for (const name of ['target', 'draft']) {
      expect(r.models[name].prompts).toBe(golden.prompts.length);
      expect(r.models[name].tokens).toBe(golden.prompts.length * 64);
    }
  });

  it('committed model data stays under 80 MB', () => {
    const bytes = ['data/models', 'data/golden']
      .flatMap((d) => fs.readdirSync(d, { recursive: true }).map((f) => path.join(d, String(f))))
      .filter((f) => fs.statSync(f).isFile())
      .reduce((s, f) => s + fs.statSync(f).size, 0);
    expect(bytes).toBeLessThan(80e6);
  });
});

describe('random-weight presets', () => {
  const expected: Record<string, [number, number]> = { 'random-125m': [120e6, 150e6], 'random-1b': [1.0e9, 1.2e9], 'random-llama3-8b': [7.9e9, 8.1e9] };
  it.each(Object.keys(expected))('%s has realistic shapes and no stored weights', (name) => {
    expect(listPresets()).toContain(name);
    const preset = loadPreset(name);
    const params = llamaSizes(preset.config).params;
    expect(params).toBeGreaterThan(expected[name][0]);
    expect(params).toBeLessThan(expected[name][1]);
    expect(fs.readdirSync('data/presets').filter((f) => !f.endsWith('.json'))).toEqual([]);
  });
});
