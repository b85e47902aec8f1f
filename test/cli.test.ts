// The CLI as a user runs it (dist/cli.js, built by `npm test`): streams text, reports metrics,
// prints help to stdout, and rejects bad flags before printing anything, with a message naming the
// flag (never a library option).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import { beforeAll, describe, expect, it } from 'vitest';

import { describeFinish, parseGenerateArgs, wantsHelp } from '../lib/cli';

const cli = (...args: string[]) => spawnSync('node', ['dist/cli.js', ...args], { encoding: 'utf8', timeout: 120_000 });

beforeAll(() => {
  if (!fs.existsSync('dist/cli.js')) throw new Error('dist/cli.js missing: run `npm run build` (npm test does)');
});

describe('inference-lab generate', () => {
  it('streams a greedy continuation of the prompt and prints metrics', () => {
    const r = cli('generate', '--model', 'data/models/draft', '--prompt', 'In the beginning', '--temperature', '0', '--max-tokens', '12', '--backend', 'wasm');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.startsWith('In the beginning')).toBe(true);
    expect(r.stdout.length).toBeGreaterThan('In the beginning'.length + 10);
    expect(r.stderr).toMatch(/backend: wasm/);
    expect(r.stderr).toMatch(/12 tokens \(length\) \| TTFT [\d.]+ ms, TPOT [\d.]+ ms/);
    expect(r.stderr, 'a greedy run has no meaningful seed').not.toMatch(/seed/);
  });

  it('names end-of-text as such, and prints the seed of a sampled run', () => {
    // the last verse of a chapter (chapters end with <|endoftext|> in the corpus); seed 11 draws it at once
    const verse = 'Save only that which the young men have eaten, and the portion of the men which went with me, Aner, Eshcol, and Mamre; let them take their portion.\n';
    const r = cli('generate', '--model', 'data/models/draft', '--prompt', verse, '--temperature', '1', '--seed', '11', '--max-tokens', '30', '--backend', 'wasm');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/1 token \(stop: end of text\), seed 11 \|/);
  });

  it('prints no tfjs Node banner on the cpu backend', () => {
    const r = cli('generate', '--model', 'data/models/draft', '--prompt', 'In the beginning', '--temperature', '0', '--max-tokens', '2', '--backend', 'cpu');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/backend: cpu/);
    expect(r.stderr + r.stdout).not.toMatch(/looks like you are running TensorFlow\.js in Node/);
  });

  it('--json gives ids equal between the naive and cached modes', () => {
    const run = (mode: string) => {
      const r = cli('generate', '--model', 'data/models/draft', '--prompt', 'And God said', '--temperature', '0', '--max-tokens', '8', '--mode', mode, '--json', '--backend', 'wasm');
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { tokenIds: number[]; metrics: { kvBytes: number } };
    };
    const cached = run('cached');
    const naive = run('naive');
    expect(naive.tokenIds).toEqual(cached.tokenIds);
    expect(cached.tokenIds.length).toBe(8);
    expect(cached.metrics.kvBytes).toBeGreaterThan(0);
  });

  it('names the bad flag or value, before printing anything, and exits non-zero', () => {
    const bad = cli('generate', '--model', 'data/models/draft', '--prompt', 'x', '--top-p', '1.5');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--top-p must be .* got 1.5/);
    expect(bad.stderr).not.toMatch(/topP/);
    expect(bad.stdout, 'the prompt is not echoed before the flags are checked').toBe('');
    const gpu = cli('generate', '--model', 'data/models/draft', '--prompt', 'x', '--backend', 'gpu');
    expect(gpu.status).toBe(1);
    expect(gpu.stderr).toBe("inference-lab: unknown backend 'gpu': choose auto, wasm, webgpu, tensorflow or cpu\n");
    expect(gpu.stdout).toBe('');
    const missing = cli('generate', '--model', 'data/models/no-such-model', '--prompt', 'x');
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/no-such-model/);
    expect(cli('frobnicate').status).toBe(2);
  });

  it('speaks of the prompt in flags, not as "prompt 0"', () => {
    const id = cli('generate', '--model', 'data/models/draft', '--prompt-ids', '1,99999', '--backend', 'wasm');
    expect(id.status).toBe(1);
    expect(id.stderr).toMatch(/--prompt-ids: token id 99999 is outside this model's vocabulary \[0, \d+\)/);
    const text = cli('generate', '--model', 'random-125m', '--prompt', 'hi');
    expect(text.status).toBe(1);
    expect(text.stderr).toMatch(/--prompt needs a tokenizer .*random-weight preset.*--prompt-ids/);
    for (const r of [id, text]) expect(r.stderr).not.toMatch(/prompt \d/);
    expect(id.stdout + text.stdout).toBe('');
  });
});

describe('inference-lab --help', () => {
  it('prints the usage to stdout and exits 0', () => {
    for (const args of [['--help'], ['-h'], []]) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^usage: inference-lab <command>/);
      expect(r.stdout).toMatch(/--max-tokens N/);
      expect(r.stderr).toBe('');
    }
  });

  it('generate --help prints generate\'s usage, whatever other flags are given', () => {
    for (const args of [['generate', '--help'], ['generate', '-h'], ['generate', '--model', 'nowhere', '--bogus', '--help']]) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^usage: inference-lab generate --model/);
      expect(r.stderr).toBe('');
    }
    expect(wantsHelp(['--prompt', '-h', '--model', 'm'])).toBe(false);
  });
});

describe('parseGenerateArgs', () => {
  it('maps flags onto sampling params', () => {
    const a = parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--top-k', '5', '--stop', 'a', '--stop', 'b', '--seed', '9', '--ignore-eos']);
    expect(a.params).toMatchObject({ topK: 5, stopStrings: ['a', 'b'], seed: 9, ignoreEos: true, maxTokens: 128, temperature: 0.8 });
    expect(parseGenerateArgs(['--model', 'm', '--prompt-ids', '1,2,3']).prompt).toEqual([1, 2, 3]);
    expect(parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--threads', '2']).threads).toBe(2);
    expect(parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--threads', 'all']).threads).toBe('all');
    expect(parseGenerateArgs(['--model', 'm', '--prompt', 'p']).threads).toBeUndefined();
  });

  it('checks sampling values and the backend, naming flags', () => {
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--temperature=-1'])).toThrow(/^--temperature must be .*, got -1$/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--logprobs', '99'])).toThrow(/^--logprobs must be/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--backend', 'cuda'])).toThrow("unknown backend 'cuda'");
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt-ids', '1,2.5'])).toThrow(/--prompt-ids must be comma-separated token ids/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', ''])).toThrow(/--prompt is empty/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--threads', '0'])).toThrow(/^--threads must be an integer in \[1, 64\] or 'all', got '0'$/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--threads', 'many'])).toThrow(/--threads/);
  });

  it('describes why an output ended in words', () => {
    const params = { stopTokenIds: [7] };
    expect(describeFinish({ finishReason: 'length', stopReason: null }, params)).toBe('length');
    expect(describeFinish({ finishReason: 'stop', stopReason: 0 }, params)).toBe('stop: end of text');
    expect(describeFinish({ finishReason: 'stop', stopReason: 7 }, params)).toBe('stop: token 7');
    expect(describeFinish({ finishReason: 'stop', stopReason: '\n\n' }, params)).toBe('stop: "\\n\\n"');
  });

  it('rejects missing or conflicting inputs and non-numbers', () => {
    expect(() => parseGenerateArgs(['--prompt', 'p'])).toThrow(/--model is required/);
    expect(() => parseGenerateArgs(['--model', 'm'])).toThrow(/exactly one of --prompt and --prompt-ids/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--max-tokens', 'ten'])).toThrow(/--max-tokens must be a number, got 'ten'/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--mode', 'fast'])).toThrow(/--mode must be cached or naive/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--bogus'])).toThrow(/^unknown option '--bogus' \(inference-lab generate --help lists the options\)$/);
  });
});
