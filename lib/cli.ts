#!/usr/bin/env node
// The command line: `inference-lab generate --model DIR|PRESET --prompt TEXT [flags]` streams text
// to stdout and prints the call's metrics to stderr. Flags map one to one onto SamplingParams.
// Every flag is checked before anything is printed, and errors speak in flags, not in the
// library's option names.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { DEFAULT_WASM_THREADS, initBackend, parseThreadsFlag, shutdownBackend, type BackendPreference } from './backend';
import { generateStream, type GenerateMode, type GenerationOutput } from './generate/generate';
import { loadModel } from './model/load';
import { listPresets } from './model/presets';
import type { LlamaConfig } from './model/config';
import { isGreedy, resolveSamplingParams, type SamplingParams, type SamplingParamsInput } from './generate/sampling';
import { loadTokenizer, type Tokenizer } from './generate/tokenizer';

const GENERATE_USAGE = `usage: inference-lab generate --model DIR|PRESET (--prompt TEXT | --prompt-ids IDS) [options]

  --model DIR|PRESET     HF model directory (config.json + safetensors + tokenizer.json)
                         or a random-weight preset name (data/presets: random-125m, ...)
  --prompt TEXT          the prompt (with a preset, give token ids: --prompt-ids 1,2,3)
  --prompt-ids IDS       comma-separated token ids instead of text
  --backend NAME         auto (default) | wasm | webgpu | tensorflow | cpu
  --threads N|all        wasm: CPU threads (default ${DEFAULT_WASM_THREADS}: every core, at most 8)
  --no-fma               wasm: our kernels without fused multiply-adds (default: with, where relaxed SIMD runs)
  --mode MODE            cached (default) | naive (recompute the prefix every step)
  --max-tokens N         tokens to generate (default 128)
  --temperature T        0 = greedy (default 0.8)
  --top-k K  --top-p P  --min-p P  --seed N
  --stop STR             stop string (repeatable)   --stop-token-id ID (repeatable)
  --ignore-eos           keep going past end-of-text
  --logprobs N           print the top-N alternatives of each token to stderr
  --json                 print the whole output (ids, logprobs, metrics) as JSON instead of text
  -h, --help             print this help
`;

const USAGE = `usage: inference-lab <command> [options]

Run a Llama-architecture model on TensorFlow.js and report where the time goes.

commands:
  generate    stream a continuation of a prompt (inference-lab generate --help)

${GENERATE_USAGE}`;

const BACKENDS: readonly BackendPreference[] = ['auto', 'wasm', 'webgpu', 'tensorflow', 'cpu'];

const GENERATE_OPTIONS = {
  model: { type: 'string' },
  prompt: { type: 'string' },
  'prompt-ids': { type: 'string' },
  backend: { type: 'string', default: 'auto' },
  threads: { type: 'string' },
  'no-fma': { type: 'boolean', default: false },
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
  help: { type: 'boolean', short: 'h', default: false },
} satisfies ParseArgsConfig['options'];

/** The flag behind each sampling parameter, so that errors name what the user typed. */
const FLAG_OF: Partial<Record<keyof SamplingParams, string>> = {
  maxTokens: 'max-tokens',
  temperature: 'temperature',
  topK: 'top-k',
  topP: 'top-p',
  minP: 'min-p',
  seed: 'seed',
  logprobs: 'logprobs',
  stopTokenIds: 'stop-token-id',
  stopStrings: 'stop',
};

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x)) throw new Error(`--${name} must be a number, got '${v}'`);
  return x;
}

/** What `inference-lab generate` runs with, every flag already checked. */
export interface GenerateArgs {
  model: string;
  prompt: string | number[];
  backend: BackendPreference;
  /** wasm threads (initBackend's wasmThreads); undefined = its default */
  threads?: number | 'all';
  /** false: our wasm kernels without fused multiply-adds (initBackend's wasmFma) */
  fma?: boolean;
  mode: GenerateMode;
  params: SamplingParams;
  json: boolean;
}

/** True when `generate`'s arguments ask for help (`-h` or `--help`), whatever else they hold. */
export function wantsHelp(argv: string[]): boolean {
  return parseArgs({ args: argv, options: GENERATE_OPTIONS, strict: false }).values.help === true;
}

/** Parses and checks `generate` flags (sampling values included); errors name the flag. */
export function parseGenerateArgs(argv: string[]): GenerateArgs {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, strict: true, options: GENERATE_OPTIONS }));
  } catch (e) {
    // node's advice on positional arguments does not apply here: this command takes none
    const { code, message } = e as Error & { code?: string };
    const short = code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL';
    const msg = short ? message.split('. ')[0] : message.replace(/\n/g, ' ');
    throw new Error(`${msg[0].toLowerCase()}${msg.slice(1)} (inference-lab generate --help lists the options)`);
  }
  if (!values.model) throw new Error('--model is required (e.g. --model data/models/target)');
  if ((values.prompt === undefined) === (values['prompt-ids'] === undefined)) throw new Error('give exactly one of --prompt and --prompt-ids');
  if (values.prompt === '') throw new Error('--prompt is empty: give some text');
  const promptIds = values['prompt-ids']?.split(',').map((s) => {
    const id = num('prompt-ids', s) as number;
    if (!Number.isInteger(id) || id < 0) throw new Error(`--prompt-ids must be comma-separated token ids (integers >= 0), got '${s}'`);
    return id;
  });
  const backend = values.backend as BackendPreference;
  if (!BACKENDS.includes(backend)) {
    throw new Error(`unknown backend '${values.backend}': choose ${BACKENDS.slice(0, -1).join(', ')} or ${BACKENDS[BACKENDS.length - 1]}`);
  }
  const threads = values.threads === undefined ? undefined : parseThreadsFlag(values.threads);
  const mode = values.mode as GenerateMode;
  if (mode !== 'cached' && mode !== 'naive') throw new Error(`--mode must be cached or naive, got '${values.mode}'`);

  const input: SamplingParamsInput = {
    maxTokens: num('max-tokens', values['max-tokens']),
    temperature: num('temperature', values.temperature),
    ignoreEos: values['ignore-eos'],
  };
  const optional: [keyof SamplingParamsInput, 'top-k' | 'top-p' | 'min-p' | 'seed' | 'logprobs'][] = [
    ['topK', 'top-k'], ['topP', 'top-p'], ['minP', 'min-p'], ['seed', 'seed'], ['logprobs', 'logprobs'],
  ];
  for (const [field, flag] of optional) {
    const v = num(flag, values[flag]);
    if (v !== undefined) (input as Record<string, unknown>)[field] = v;
  }
  if (values.stop) input.stopStrings = values.stop;
  if (values['stop-token-id']) input.stopTokenIds = values['stop-token-id'].map((s) => num('stop-token-id', s) as number);
  return { model: values.model, prompt: values.prompt ?? promptIds!, backend, threads, fma: values['no-fma'] ? false : undefined, mode, params: checkSampling(input), json: values.json };
}

/** resolveSamplingParams with its messages reworded from field names to flags. */
function checkSampling(input: SamplingParamsInput): SamplingParams {
  try {
    return resolveSamplingParams(input);
  } catch (e) {
    const msg = (e as Error).message;
    const field = /^(\w+) must be/.exec(msg)?.[1] as keyof SamplingParams | undefined;
    const flag = field && FLAG_OF[field];
    throw new Error(flag ? `--${flag}${msg.slice(field.length)}` : msg);
  }
}

/** The prompt checks generate() makes, worded for the command line and made before any output. */
export function checkPrompt(config: Pick<LlamaConfig, 'vocabSize' | 'maxPositions'>, tokenizer: Tokenizer | undefined, prompt: string | number[]): void {
  const ids = typeof prompt === 'string' ? (tokenizer?.encode(prompt) ?? []) : prompt;
  if (ids.length === 0) throw new Error('--prompt encodes to no tokens: give some text');
  const bad = ids.find((id) => id >= config.vocabSize);
  if (bad !== undefined) throw new Error(`--prompt-ids: token id ${bad} is outside this model's vocabulary [0, ${config.vocabSize})`);
  if (ids.length >= config.maxPositions) {
    throw new Error(`the prompt is ${ids.length} tokens, but the model's context is ${config.maxPositions}: at most ${config.maxPositions - 1} leave room to generate`);
  }
}

/** Why the output ended, for people: `length`, `stop: end of text`, `stop: token 42`, `stop: "\n\n"`. */
export function describeFinish(out: Pick<GenerationOutput, 'finishReason' | 'stopReason'>, params: Pick<SamplingParams, 'stopTokenIds'>): string {
  const r = out.stopReason;
  if (out.finishReason !== 'stop' || r === null) return out.finishReason;
  if (typeof r === 'string') return `stop: ${JSON.stringify(r)}`;
  return params.stopTokenIds.includes(r) ? `stop: token ${r}` : 'stop: end of text';
}

async function runGenerate(argv: string[]): Promise<void> {
  const args = parseGenerateArgs(argv);
  const hasTokenizer = fs.existsSync(path.join(args.model, 'tokenizer.json'));
  if (typeof args.prompt === 'string' && !hasTokenizer) {
    // a missing model is loadModel's error to report, after the backend line
    const isDir = fs.existsSync(args.model) && fs.statSync(args.model).isDirectory();
    if (isDir && fs.existsSync(path.join(args.model, 'config.json'))) throw new Error(`--prompt needs a tokenizer and '${args.model}' has no tokenizer.json: give token ids with --prompt-ids`);
    if (!isDir && (listPresets().includes(args.model) || fs.existsSync(args.model))) {
      throw new Error(`--prompt needs a tokenizer and '${args.model}' is a random-weight preset without one: give token ids with --prompt-ids`);
    }
  }
  const backend = await initBackend({ prefer: args.backend, wasmThreads: args.threads, wasmFma: args.fma });
  process.stderr.write(`backend: ${backend.name} (${backend.reason})\n`);
  const model = await loadModel(args.model);
  try {
    const tokenizer: Tokenizer | undefined = hasTokenizer ? await loadTokenizer(args.model) : undefined;
    checkPrompt(model.config, tokenizer, args.prompt);
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
      const tokens = `${m.outputTokens} token${m.outputTokens === 1 ? '' : 's'}`;
      // a greedy run draws no random numbers: its seed would mean nothing
      const seed = isGreedy(args.params) ? '' : `, seed ${out.seed}`;
      process.stdout.write('\n');
      process.stderr.write(
        `\n${tokens} (${describeFinish(out, args.params)})${seed} | ` +
          `TTFT ${m.ttftMs.toFixed(1)} ms, TPOT ${m.tpotMs.toFixed(2)} ms, ${m.decodeTokensPerSecond.toFixed(1)} tok/s decode, ` +
          `KV cache ${(m.kvBytes / 1024).toFixed(0)} KiB (${args.mode})\n`,
      );
    }
  } finally {
    model.dispose();
    await shutdownBackend();
  }
}

/** Entry point: dispatches on the first argument. Help goes to stdout; errors to stderr. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(USAGE);
      return 0;
    }
    if (command === 'generate') {
      if (wantsHelp(rest)) {
        process.stdout.write(GENERATE_USAGE);
        return 0;
      }
      await runGenerate(rest);
      return 0;
    }
    process.stderr.write(`inference-lab: unknown command '${command}' (the command is generate; inference-lab --help)\n`);
    return 2;
  } catch (e) {
    process.stderr.write(`inference-lab: ${(e as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
