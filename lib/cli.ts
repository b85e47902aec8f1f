#!/usr/bin/env node
// The command line: `inference-lab generate --model DIR|PRESET --prompt TEXT [flags]` streams text
// to stdout and prints the call's metrics to stderr. Flags map one to one onto SamplingParams.
import { parseArgs } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { initBackend, shutdownBackend, type BackendPreference } from './backend';
import { generateStream, type GenerateMode } from './generate';
import { loadModel } from './model/load';
import type { SamplingParamsInput } from './sampling';
import { loadTokenizer, type Tokenizer } from './tokenizer';

const USAGE = `usage: inference-lab generate --model DIR|PRESET --prompt TEXT [options]

  --model DIR|PRESET     HF model directory (config.json + safetensors + tokenizer.json)
                         or a random-weight preset name (data/presets: random-125m, ...)
  --prompt TEXT          the prompt (with a preset, give token ids: --prompt-ids 1,2,3)
  --prompt-ids IDS       comma-separated token ids instead of text
  --backend NAME         auto (default) | wasm | webgpu | tensorflow | cpu
  --mode MODE            cached (default) | naive (recompute the prefix every step)
  --max-tokens N         tokens to generate (default 128)
  --temperature T        0 = greedy (default 0.8)
  --top-k K  --top-p P  --min-p P  --seed N
  --stop STR             stop string (repeatable)   --stop-token-id ID (repeatable)
  --ignore-eos           keep going past end-of-text
  --logprobs N           print the top-N alternatives of each token to stderr
  --json                 print the whole output (ids, logprobs, metrics) as JSON instead of text
`;

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x)) throw new Error(`--${name} must be a number, got '${v}'`);
  return x;
}

/** Parses `generate` flags into what generateStream takes; errors name the flag. */
export function parseGenerateArgs(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'prompt-ids': { type: 'string' },
      backend: { type: 'string', default: 'auto' },
      mode: { type: 'string', default: 'cached' },
      'max-tokens': { type: 'string', default: '128' },
      temperature: { type: 'string', default: '0.8' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      'min-p': { type: 'string' },
      seed: { type: 'string' },
      stop: { type: 'string', multiple: true },
      'stop-token-id': { type: 'string', multiple: true },
      'ignore-eos': { type: 'boolean', default: false },
      logprobs: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (!values.model) throw new Error('--model is required (e.g. --model data/models/target)');
  if ((values.prompt === undefined) === (values['prompt-ids'] === undefined)) throw new Error('give exactly one of --prompt and --prompt-ids');
  const promptIds = values['prompt-ids']?.split(',').map((s) => num('prompt-ids', s) as number);
  const params: SamplingParamsInput = {
    maxTokens: num('max-tokens', values['max-tokens']),
    temperature: num('temperature', values.temperature),
    ignoreEos: values['ignore-eos'],
  };
  const optional: [keyof SamplingParamsInput, string][] = [['topK', 'top-k'], ['topP', 'top-p'], ['minP', 'min-p'], ['seed', 'seed'], ['logprobs', 'logprobs']];
  for (const [field, flag] of optional) {
    const v = num(flag, values[flag as keyof typeof values] as string | undefined);
    if (v !== undefined) (params as Record<string, unknown>)[field] = v;
  }
  if (values.stop) params.stopStrings = values.stop;
  if (values['stop-token-id']) params.stopTokenIds = values['stop-token-id'].map((s) => num('stop-token-id', s) as number);
  const mode = values.mode as GenerateMode;
  if (mode !== 'cached' && mode !== 'naive') throw new Error(`--mode must be cached or naive, got '${values.mode}'`);
  return { model: values.model, prompt: values.prompt ?? promptIds!, backend: values.backend as BackendPreference, mode, params, json: values.json };
}

async function runGenerate(argv: string[]): Promise<void> {
  const args = parseGenerateArgs(argv);
  const backend = await initBackend({ prefer: args.backend });
  process.stderr.write(`backend: ${backend.name} (${backend.reason})\n`);
  const model = await loadModel(args.model);
  const hasTokenizer = fs.existsSync(path.join(args.model, 'tokenizer.json'));
  const tokenizer: Tokenizer | undefined = hasTokenizer ? await loadTokenizer(args.model) : undefined;
  try {
    const stream = generateStream({ model, tokenizer }, args.prompt, args.params, { mode: args.mode });
    if (!args.json && typeof args.prompt === 'string') process.stdout.write(args.prompt);
    let r = await stream.next();
    while (!r.done) {
      const ev = r.value;
      if (!args.json) process.stdout.write(tokenizer ? ev.text : `${ev.token} `);
      if (ev.topLogprobs && !args.json) {
        const alts = ev.topLogprobs.map((t) => `${JSON.stringify(tokenizer?.decode([t.token]) ?? t.token)} ${t.logprob.toFixed(2)}`);
        process.stderr.write(`\n  [${alts.join(', ')}]\n`);
      }
      r = await stream.next();
    }
    const [out] = r.value;
    if (args.json) {
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    } else {
      const m = out.metrics;
      process.stdout.write('\n');
      process.stderr.write(
        `\n${m.outputTokens} tokens (${out.finishReason}${out.stopReason !== null ? `: ${JSON.stringify(out.stopReason)}` : ''}), seed ${out.seed} | ` +
          `TTFT ${m.ttftMs.toFixed(1)} ms, TPOT ${m.tpotMs.toFixed(2)} ms, ${m.decodeTokensPerSecond.toFixed(1)} tok/s decode, ` +
          `KV cache ${(m.kvBytes / 1024).toFixed(0)} KiB (${args.mode})\n`,
      );
    }
  } finally {
    model.dispose();
    await shutdownBackend();
  }
}

/** Entry point: dispatches on the first argument. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'generate') {
      await runGenerate(rest);
      return 0;
    }
    process.stderr.write(command === undefined || command === '--help' || command === '-h' ? USAGE : `unknown command '${command}'\n\n${USAGE}`);
    return command === undefined || command === '--help' || command === '-h' ? 0 : 2;
  } catch (e) {
    process.stderr.write(`inference-lab: ${(e as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
