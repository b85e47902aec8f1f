// The README's TypeScript example, run the way it tells a new user to: taken from README.md
// ("From TypeScript"), saved as a .ts file inside the repository (so 'inference-lab' resolves to
// this package, CommonJS like a user's) and run with `npx tsx`. Two literals change, to keep CI
// fast and off any GPU: 8 tokens instead of 64, and the wasm backend asked for by name.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { perfTable, withTable } from '../scripts/data/perf-table';

const SNIPPET_FILE = path.join('build', 'readme-snippet.ts');

/** The first ```ts block under "## From TypeScript". */
function readmeSnippet(): string {
  const readme = fs.readFileSync('README.md', 'utf8');
  const section = readme.split(/^## From TypeScript\s*$/m)[1]?.split(/^## /m)[0];
  if (section === undefined) throw new Error('README.md has no "## From TypeScript" section');
  const block = /```ts\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('README.md: no ```ts block under "## From TypeScript"');
  return block[1];
}

/** Replace `from` by `to`, insisting it occurs exactly once (so a changed README fails loudly here). */
function replaceOnce(code: string, from: string, to: string): string {
  const n = code.split(from).length - 1;
  if (n !== 1) throw new Error(`README snippet: expected '${from}' once, found it ${n} times: update test/readme.test.ts`);
  return code.replace(from, to);
}

beforeAll(() => {
  if (!fs.existsSync('dist/index.js')) throw new Error('dist/index.js missing: run `npm run build` (npm test does)');
});

afterAll(() => {
  fs.rmSync(SNIPPET_FILE, { force: true });
});

describe('README', () => {
  it('its TypeScript example runs as written (npx tsx)', () => {
    let code = readmeSnippet();
    code = replaceOnce(code, 'maxTokens: 64', 'maxTokens: 8');
    code = replaceOnce(code, 'await initBackend();', "await initBackend({ prefer: 'wasm' });");
    fs.mkdirSync(path.dirname(SNIPPET_FILE), { recursive: true });
    fs.writeFileSync(SNIPPET_FILE, code);
    const r = spawnSync('npx', ['tsx', SNIPPET_FILE], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/ttftMs: [\d.]+/);
    expect(r.stdout).toMatch(/outputTokens: 8\b/);
  });

  it('links only files inside the repository', () => {
    const readme = fs.readFileSync('README.md', 'utf8');
    expect(readme).not.toMatch(/\.\.\/shared|\]\(\.\.\//);
    for (const [, target] of readme.matchAll(/\]\(([^)#]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(target)) continue; // a web address
      expect(fs.existsSync(target), `README links ${target}`).toBe(true);
    }
  });
});

describe('README performance table', () => {
  it('is the one scripts/data/perf-table.ts generates from the committed GPU records (no typed-in figures)', () => {
    const readme = fs.readFileSync('README.md', 'utf8');
    expect(withTable(readme, perfTable())).toBe(readme);
    expect(perfTable()).toMatch(/captured/);
  });
});
