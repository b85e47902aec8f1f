// The CLI as a user runs it (dist/cli.js, built by `npm test`): streams text, reports metrics, and
// rejects bad flags with a message naming the flag.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import { beforeAll, describe, expect, it } from 'vitest';

import { parseGenerateArgs } from '../lib/cli';

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
    expect(r.stderr).toMatch(/12 tokens \(length\).*TTFT [\d.]+ ms, TPOT [\d.]+ ms/);
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

  it('names the bad flag or value and exits non-zero', () => {
    const bad = cli('generate', '--model', 'data/models/draft', '--prompt', 'x', '--top-p', '1.5');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/topP must be .* got 1.5/);
    const missing = cli('generate', '--model', 'data/models/no-such-model', '--prompt', 'x');
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/no-such-model/);
    expect(cli('frobnicate').status).toBe(2);
  });
});

describe('parseGenerateArgs', () => {
  it('maps flags onto sampling params', () => {
    const a = parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--top-k', '5', '--stop', 'a', '--stop', 'b', '--seed', '9', '--ignore-eos']);
    expect(a.params).toMatchObject({ topK: 5, stopStrings: ['a', 'b'], seed: 9, ignoreEos: true, maxTokens: 128, temperature: 0.8 });
    expect(parseGenerateArgs(['--model', 'm', '--prompt-ids', '1,2,3']).prompt).toEqual([1, 2, 3]);
  });

  it('rejects missing or conflicting inputs and non-numbers', () => {
    expect(() => parseGenerateArgs(['--prompt', 'p'])).toThrow(/--model is required/);
    expect(() => parseGenerateArgs(['--model', 'm'])).toThrow(/exactly one of --prompt and --prompt-ids/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--max-tokens', 'ten'])).toThrow(/--max-tokens must be a number, got 'ten'/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--mode', 'fast'])).toThrow(/--mode must be cached or naive/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt', 'p', '--bogus'])).toThrow(/bogus/);
  });
});
