// Writes data/README.md from the artifacts themselves (report.json, llamacpp.json, manifest.json,
// file sizes), so that no figure in it is typed by hand.
//
//   npm run data:readme
import * as fs from 'fs';
import * as path from 'path';

import { capturedDispatches } from '../../lib/gpu/kernels';
import { configFromHF, llamaSizes } from '../../lib/model/config';
import { listPresets, loadPreset } from '../../lib/model/presets';

const readJson = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8'));
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const millions = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : `${(n / 1e6).toFixed(2)}M`);

function dirBytes(dir: string): number {
  return fs
    .readdirSync(dir, { recursive: true })
    .map((f) => path.join(dir, String(f)))
    .filter((f) => fs.statSync(f).isFile())
    .reduce((s, f) => s + fs.statSync(f).size, 0);
}

const manifest = readJson('data/corpus/manifest.json');
const report = readJson('data/models/report.json');
const logs = readJson('data/logs/training_logs.json');
const golden = readJson('data/golden/golden.json');
const llamacpp = readJson('data/golden/llamacpp.json');
const llamacppF16 = fs.existsSync('data/golden/llamacpp-f16.json') ? readJson('data/golden/llamacpp-f16.json') : null;

// one row of the models table: data/models/<name>, its perplexities and how it was trained
const modelConfig = (name: string) => configFromHF(readJson(`data/models/${name}/config.json`));
function modelRow(name: string, ppl: { validation: { ppl: number }; test: { ppl: number } }, training: string): string {
  const c = modelConfig(name);
  return `| \`${name}\` | ${millions(llamaSizes(c).params)} | ${c.numLayers} | ${c.hiddenSize} | ${c.numHeads} / ${c.numKvHeads} (D=${c.headDim}) | ${c.intermediateSize} | ${c.maxPositions} | ${ppl.validation.ppl.toFixed(2)} | ${ppl.test.ppl.toFixed(2)} | ${mb(fs.statSync(`data/models/${name}/model.safetensors`).size)} | ${training} |`;
}

const modelRows = (['target', 'draft'] as const).map((name) => {
  const chosen = report[name].chosen as string;
  const log = logs[chosen] ?? {};
  const onPolicy = name === 'draft' && report.on_policy ? `; on-policy: best step ${report.on_policy.best_step}, ${report.on_policy.seconds} s` : '';
  return modelRow(name, report[name], `${chosen}, best step ${log.best_step}, ${log.seconds} s${onPolicy}`);
});

// the extra drafts shipped beside `draft` (train.py's EXTRA_DRAFTS), one row each in the models table
const extras = Object.entries((report.extra_drafts ?? {}) as Record<string, ExtraDraft>);
interface ExtraDraft {
  params: number;
  seconds: number;
  validation: { ppl: number };
  test: { ppl: number };
  first_stage: { test_agreement: { agreement: number }; validation: { ppl: number } };
  on_policy: { best_step: number; steps: number; validation_before: Agreement; validation_after: Agreement };
  agreement_teacher_forced_test: { agreement: number };
  agreement_on_target_greedy: Agreement & { positions: number };
}
interface Agreement {
  agreement: number;
  tokens_per_step: Record<string, number>;
}
const extraRows = extras.map(([name, e]) => modelRow(name, e, `both stages: first best step ${logs[name]?.best_step}, on-policy best step ${e.on_policy.best_step}, ${e.seconds} s`));

// a full run's time: the first run's stages, then the on-policy stage and the extra drafts as timed by their runs
function fullRunSeconds(): number {
  return report.seconds + (report.on_policy?.seconds ?? 0) + extras.reduce((s, [, e]) => s + e.seconds, 0);
}

function extraSection(): string {
  if (extras.length === 0) return '';
  const draft = modelConfig('draft');
  const target = modelConfig('target');
  const lines = extras.map(([name, e]) => {
    const c = modelConfig(name);
    const g = e.agreement_on_target_greedy;
    return `- \`${name}\`: ${c.numLayers} layer${c.numLayers > 1 ? 's' : ''}, hidden ${c.hiddenSize}${c.hiddenSize === target.hiddenSize ? " (as wide as the target; its embedding starts from the target's)" : ''}, ${millions(e.params)} parameters. A decode step on the captured GPU path is ${capturedDispatches(c.numLayers)} dispatches against ${capturedDispatches(draft.numLayers)} for \`draft\`. After the first stage it agreed on ${pct(e.first_stage.test_agreement.agreement)} of test-split positions (teacher-forced); after the on-policy stage ${pct(e.agreement_teacher_forced_test.agreement)}, and ${pct(g.agreement)} of the ${g.positions} positions of the target's greedy continuations of the golden prompts (\`draft\`: ${pct(report.draft_agreement_on_target_greedy.agreement)}); a replayed greedy speculative step emits ${g.tokens_per_step['4'].toFixed(2)} tokens at γ = 4 and ${g.tokens_per_step['6'].toFixed(2)} at γ = 6. Made by \`python3 scripts/train/train.py --draft-only data --extra-draft ${name} --out OUT\` (log: \`logs/train-${name}.log\`).`;
  });
  return `
**Extra drafts** (\`models/draft-*\`, beside \`draft\`, same training recipe: both stages). \`draft\` keeps issue 2's shape
(${draft.numLayers} layers, ${millions(llamaSizes(draft).params)} parameters). On the captured GPU path a step costs about five kernel dispatches a
layer whatever the width, so there a draft pays for depth, not width (EAGLE and Medusa draft with one layer for
the same reason); on CPU the bytes of its weights count instead. Lesson 4 races the drafts on both paths,
\`npm run bench:spec -- --backend webgpu\` on the captured one.

${lines.join('\n')}
`;
}

const candidateRows = Object.entries(report.draft_candidates as Record<string, { params: number; test_agreement: { agreement: number }; validation: { ppl: number } }>).map(
  ([name, c]) =>
    `| ${name} | ${millions(c.params)} | ${c.validation.ppl.toFixed(2)} | ${pct(c.test_agreement.agreement)} | ${name === report.draft.chosen ? (report.on_policy ? 'shipped as `draft`, after the on-policy stage' : 'shipped as `draft`') : ''} |`,
);

// the draft's second stage: distilled again on the target's own continuations (train.py step 3b)
function onPolicySection(): string {
  const o = report.on_policy;
  if (!o) return '';
  const tps = (a: { tokens_per_step: Record<string, number> }) => a.tokens_per_step['4'].toFixed(2);
  return `
**On-policy stage.** Speculative decoding only ever asks the draft about text the target writes, so the
chosen draft is distilled again on the target's own continuations: ${o.calls} batches of ${o.per_call} random train-split
prompts (${o.prompt_tokens[0]}-${o.prompt_tokens[1]} tokens), each continued by the target for ${o.new_tokens} tokens, alternately greedy
and sampled at temperature ${o.temperatures.filter((t: number) => t > 0).join(', ')}; the loss is the KL divergence to the target's distribution on
every position, and every ${o.natural_every}th batch is a plain train-split window with the first stage's loss so
the draft stays a language model. The checkpoint kept (step ${o.best_step} of ${o.steps}, ${o.seconds} s on the GPU, rollouts
included) is the one that agrees best with the target's greedy continuations of validation-split prompts:
${pct(o.validation_before.agreement)} before, ${pct(o.validation_after.agreement)} after; a greedy speculative step at γ = 4 replayed on those
continuations emits ${tps(o.validation_before)} tokens before, ${tps(o.validation_after)} after. It also lowered the draft's own perplexity,
to ${report.draft.test.ppl.toFixed(2)} on the test split against the target's ${report.target.test.ppl.toFixed(2)}: ${(o.calls * o.per_call * o.new_tokens / 1e6).toFixed(1)}M tokens of the
target's text are more training data than the ${(report.tokens.train / 1e6).toFixed(1)}M-token train split the target itself overfits.
The target is still the model whose output the course serves; the draft only proposes.
(\`python3 scripts/train/train.py --draft-only data --out OUT\` reruns this stage alone on the shipped models.)
`;
}

const presetRows = listPresets().map((name) => {
  const p = loadPreset(name);
  const s = llamaSizes(p.config);
  return `| \`${name}\` | ${millions(s.params)} | ${p.config.numLayers} | ${p.config.hiddenSize} | ${p.config.numHeads} / ${p.config.numKvHeads} | ${p.config.vocabSize} | ${mb(s.weightBytes)} | ${p.note ?? ''} |`;
});

const llamaRows = [llamacpp, llamacppF16].filter(Boolean).flatMap((r) =>
  Object.keys(r.models).map((name) => {
    const m = r.models[name];
    return `| \`${name}\` | ${r.gguf} | ${mb(m.bytes)} | ${m.tokenizationIdentical}/${m.prompts} | ${m.promptsIdentical}/${m.prompts} | ${m.tokensAgreeing}/${m.tokens} |`;
  }),
);

const splitRows = ['train', 'validation', 'test'].map((s) => {
  const m = manifest.splits[s];
  return `| ${s} | ${m.chapters} | ${m.words.toLocaleString('en')} | ${report.tokens[s].toLocaleString('en')} | ${mb(m.bytes)} | ${s === 'train' ? 'no (rebuilt by `npm run data:corpus`)' : 'yes'} |`;
});

const lengths = golden.prompts.map((p: { ids: number[] }) => p.ids.length);
const sample = report.samples.find((s: { prompt: string }) => s.prompt.startsWith('And Jesus')) ?? report.samples[0];

const text = `# data/: the model zoo

Everything the lessons run on: a public-domain corpus, a tokenizer, two small Llama models we trained
ourselves, the oracle outputs that the TypeScript runtime is checked against, and random-weight
presets at real model shapes. *This file is generated by \`npm run data:readme\` from the artifacts;
do not edit the figures by hand.*

## Corpus: \`corpus/\`

- **Source**: ${manifest.source}; packages ${Object.entries(manifest.packages).map(([k, v]) => `${k} ${v}`).join(', ')}.
  The KJV text is in the public domain (translation of 1611; see the packages' copyright file:
  "The copyright for the King James Version text of the Bible is expired"). The packaging software is GPL-2+, and none of it is redistributed here: only the text.
- **Cleaning** (\`scripts/data/corpus.ts\`): ${manifest.cleaning}; ${manifest.separator}.
- **Split**: ${manifest.split}. The test split is never trained on (tokenizer included); lessons use it for perplexity.
- **Rebuild**: \`npm run data:corpus\` (Debian/Ubuntu with apt; no root needed). \`manifest.json\` holds SHA-256 sums; CI checks them.

| split | chapters | words | tokens | size | committed |
|---|---:|---:|---:|---:|---|
${splitRows.join('\n')}

## Tokenizer

Byte-level BPE (GPT-2 style: ByteLevel pre-tokenizer with the GPT-2 regex, no prefix space), vocabulary
8192 with \`<|endoftext|>\` = id 0 (also bos/eos), trained with HF \`tokenizers\` on the train split only.
Saved as \`tokenizer.json\` + \`tokenizer_config.json\` inside each model directory. In Node it loads with
\`@huggingface/tokenizers\` and encodes identically to HF \`tokenizers\` on ${golden.encodings.length} fixed texts
(Unicode, emoji, whitespace runs, special token) and on every golden prompt (\`test/tokenizer.test.ts\`).

## Models: \`models/target\`, \`models/draft\`

HF format (\`config.json\`, \`generation_config.json\`, \`model.safetensors\` in BF16, tokenizer files);
Llama architecture: RMSNorm, RoPE (θ = 10000), grouped-query attention, SwiGLU MLP, tied embeddings,
context 1024. Trained with transformers' \`LlamaForCausalLM\` on one ${report.versions.gpu}
(torch ${report.versions.torch}, transformers ${report.versions.transformers}); the whole run took ${Math.round(report.seconds)} s.
Perplexity: fp32 (weights upcast from the shipped BF16), non-overlapping 1024-token windows over the
split's token stream (documents joined by \`<|endoftext|>\`).

| model | params | layers | hidden | heads / KV heads | MLP | context | val ppl | test ppl | weights | training |
|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|
${[...modelRows, ...extraRows].join('\n')}

The target overfits 0.9M training tokens within a few epochs, so training uses dropout (embeddings,
residual branches, attention) and keeps the checkpoint with the best validation loss; the run tries
dropout ${Object.keys(logs).filter((k) => k.startsWith('target-')).map((k) => logs[k].dropout).join(' and ')} and ships the better one.
The draft candidates are distilled from the shipped target (0.5 cross-entropy + 0.5 KL to the target's
distribution); the smallest that reaches ${pct(report.agreement_goal)} greedy agreement is shipped.
${onPolicySection()}${extraSection()}
| draft candidate | params | val ppl | greedy agreement with target (test split, teacher-forced) | |
|---|---:|---:|---:|---|
${candidateRows.join('\n')}

**Draft/target greedy agreement** (what speculative decoding needs, goal ≥ 60%):
${pct(report.draft_agreement_teacher_forced_test.agreement)} of ${report.draft_agreement_teacher_forced_test.positions.toLocaleString('en')} test-split positions (both models see the same text,
argmax compared) and ${pct(report.draft_agreement_on_target_greedy.agreement)} of ${report.draft_agreement_on_target_greedy.positions} positions of the target's own greedy continuations
of the golden prompts (the per-token acceptance of greedy speculative decoding)${report.draft_agreement_on_target_greedy.tokens_per_step ? `; replayed as greedy speculative steps there, γ = 4 emits ${report.draft_agreement_on_target_greedy.tokens_per_step['4'].toFixed(2)} tokens a step and γ = 6 ${report.draft_agreement_on_target_greedy.tokens_per_step['6'].toFixed(2)}` : ''}.

A sample from the target (prompt "${sample.prompt}", temperature 0.8, HF \`generate\`, seed 0):

> ${sample['sampled_t0.8'].trim().split('\n').join('\n> ')}

Greedy decoding of models this small loops ("${report.samples[0].greedy.trim().split('\n')[0].slice(0, 80)}…"): that is
the model, not a bug, and the reason lessons sample.

## Oracle outputs: \`golden/\`

From HF transformers in fp32 (weights upcast from the shipped BF16, eager attention), versions recorded
in the file (\`versions\`).

- \`golden.json\`: ${golden.prompts.length} prompts (${Math.min(...lengths)}–${Math.max(...lengths)} tokens; ${lengths.filter((n: number) => n >= 512).length} of ≥ 512) with their text and ids: 4 fixed
  (including the lone \`<|endoftext|>\`: unconditional generation) and the rest cut from test-split chapters;
  per model: 64-token greedy continuations (full recomputation each step), the top-1/top-2 logit margin at
  each step (a mismatch where the margin < 1e-4 is an fp32 tie), top-50 logits + logsumexp for the
  prompt's last position and the first 8 greedy steps, and validation/test perplexity; the tokenizer's
  encodings of the fixed text set.
- \`target.logits.safetensors\`, \`draft.logits.safetensors\`${extras.map(([n]) => `, \`${n}.logits.safetensors\``).join('')}: the full last-position logits, F32 \`[9, 8192]\`
  per prompt (row 0: after the prompt; row k: after k greedy tokens).
- \`llamacpp.json\` (and \`llamacpp-f16.json\`): our GGUF export run by llama.cpp through node-llama-cpp
  ${llamacpp.nodeLlamaCpp} (${llamacpp.settings}), compared with the HF oracle:

| model | GGUF | file | tokenization identical | continuations identical | tokens agreeing |
|---|---|---:|---:|---:|---:|
${llamaRows.join('\n')}

F16 GGUF weights make llama.cpp compute some dot products in half precision, hence the odd difference.

## GGUF export

\`lib/formats/gguf.ts\` writes GGUF v3 (architecture \`llama\`, byte-level BPE vocab as \`gpt2\`/\`gpt-2\`,
Q/K rows permuted from HF's half-split RoPE to llama.cpp's adjacent pairs, tied embeddings as a missing
\`output.weight\`). \`npm run data:gguf\` exports both models to \`data/gguf/\` (git-ignored) and rewrites
\`golden/llamacpp.json\`; \`test/gguf.llamacpp.test.ts\` does the same check in CI.

## Random-weight presets: \`presets/\`

Real model shapes whose weights are generated at load time from a seed and never stored (vLLM's
\`load_format="dummy"\`), for bandwidth and throughput lessons. Each file is an HF \`config.json\` plus
\`inference_lab.random_init\`: every tensor gets its own PRNG stream seeded by (seed, tensor name),
uniform in [−std·√3, std·√3], RMSNorm weights 1. Load with \`loadModel('random-125m')\`.

| preset | params | layers | hidden | heads / KV heads | vocab | fp32 weights | shapes of |
|---|---:|---:|---:|---|---:|---:|---|
${presetRows.join('\n')}

## Training logs: \`logs/\`

\`training_logs.json\`: per model trained (both target candidates, both draft candidates, each draft's on-policy stage, the extra drafts) the train loss
every 10 steps and the validation loss/perplexity at each evaluation, with tokens seen and seconds, for
the lesson's loss-curve chart; \`train.log\` is the run's console output, \`train-on-policy.log\` the on-policy stage's (a \`--draft-only\` run)${extras.map(([n]) => `, \`train-${n}.log\` the extra draft's`).join('')}.

## Rebuilding everything

| artifact | command | where | time |
|---|---|---|---|
| corpus splits | \`npm run data:corpus\` | any Debian/Ubuntu machine | seconds |
| tokenizer, models, golden, logs | \`python3 scripts/train/train.py --out OUT\` (see \`scripts/train/README.md\`) | GPU machine | ${Math.round(fullRunSeconds() / 60)} min on an H200 (the stages' timings added up) |
| GGUF files + llama.cpp check | \`npm run data:gguf\` | CPU | ~1 min |
| this README | \`npm run data:readme\` | CPU | seconds |

Committed model data (models + golden): ${mb(dirBytes('data/models') + dirBytes('data/golden'))} (budget 80 MB).
`;

fs.writeFileSync('data/README.md', text);
console.log(`data/README.md written (${text.length} chars)`);
