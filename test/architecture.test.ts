// The folders of lib/ are layers (ARCHITECTURE.md): a file imports only from its own folder or
// from a folder below it, so the import graph has no cycle between folders. The model and the
// caches meet at one interface: model/llama.ts imports kv/cache.ts, and nothing in kv/ imports
// model/. Read from the sources as text (no build needed).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

/** Lowest first. A top-level file (backend.ts, cli.ts, index.ts) is a layer of its own. */
const LAYERS = [
  'formats', // safetensors, GGUF, half-precision bits
  'kv', // the KVCache interface and its caches
  'model', // Llama config, weights, forward (consumes kv/cache)
  'generate', // tokenizer, sampling, output recorder, generate()
  'eval', // perplexity, KL, attention entropy, percentile
  'spec', // speculative decoding
  'gpu', // the captured WebGPU decode step
  'wasmThreads', // tfjs-wasm's threaded build in Node, with our kernels' thread pool over its memory
  'backend', // where tfjs runs; shutdownBackend() also frees the captured path's GPU device
  'engine', // vLLM-style serving
  'bench', // benchmark plumbing, roofline and cost models
  'oracle', // HF and llama.cpp reference checks
  'viz', // charts and notebook helpers
  'exercises', // self-checking exercises (checks against the lib and the oracles)
  'cli',
  'index',
];

/** The only imports allowed from model/ into kv/: the model consumes the KV interface. */
const MODEL_TO_KV = new Set(['model/llama.ts -> kv/cache.ts']);

const LIB = path.resolve(__dirname, '..', 'lib');

export interface Edge {
  from: string; // lib-relative file, e.g. 'model/llama.ts'
  to: string;
}

/** Every relative import (static, type-only, re-export, dynamic, require) of lib/**\/*.ts. */
function libImports(): Edge[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) files.push(path.relative(LIB, p).split(path.sep).join('/'));
    }
  };
  walk(LIB);
  const known = new Set(files);
  const re = /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)['"](\.{1,2}\/[^'"]*)['"]/g;
  const edges: Edge[] = [];
  for (const from of files) {
    const src = fs.readFileSync(path.join(LIB, from), 'utf8');
    for (const m of src.matchAll(re)) {
      const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), m[1]));
      const to = [base + '.ts', base + '/index.ts', base].find((c) => known.has(c));
      if (!to) throw new Error(`${from}: import '${m[1]}' resolves to no file under lib/`);
      edges.push({ from, to });
    }
  }
  return edges;
}

/** A file's layer: its top folder under lib/, or the file's own name for a top-level file. */
function layerOf(file: string): string {
  const [head, ...rest] = file.split('/');
  return rest.length === 0 ? head.replace(/\.ts$/, '') : head;
}

/** The imports that break the layering, one line each (empty: none). */
export function violations(edges: readonly Edge[], layers: readonly string[] = LAYERS): string[] {
  const rank = new Map(layers.map((l, i) => [l, i]));
  const out: string[] = [];
  for (const { from, to } of edges) {
    const a = layerOf(from);
    const b = layerOf(to);
    if (a === b) continue;
    const ra = rank.get(a);
    const rb = rank.get(b);
    if (ra === undefined || rb === undefined) {
      out.push(`${from} -> ${to}: folder '${ra === undefined ? a : b}' has no place in LAYERS (test/architecture.test.ts)`);
    } else if (rb > ra) {
      out.push(`${from} -> ${to}: ${a}/ imports ${b}/, a layer above it`);
    } else if (a === 'model' && b === 'kv' && !MODEL_TO_KV.has(`${from} -> ${to}`)) {
      out.push(`${from} -> ${to}: model/ reaches kv/ only through model/llama.ts -> kv/cache.ts`);
    }
  }
  return out;
}

/** A cycle in the folder graph, as a path of folders, or null. */
export function folderCycle(edges: readonly Edge[]): string[] | null {
  const next = new Map<string, Set<string>>();
  for (const { from, to } of edges) {
    const a = layerOf(from);
    const b = layerOf(to);
    if (a === b) continue;
    if (!next.has(a)) next.set(a, new Set());
    next.get(a)!.add(b);
  }
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | null => {
    if (state.get(n) === 'done') return null;
    if (state.get(n) === 'open') return [...stack.slice(stack.indexOf(n)), n];
    state.set(n, 'open');
    stack.push(n);
    for (const m of next.get(n) ?? []) {
      const c = visit(m);
      if (c) return c;
    }
    stack.pop();
    state.set(n, 'done');
    return null;
  };
  for (const n of next.keys()) {
    const c = visit(n);
    if (c) return c;
  }
  return null;
}

describe('lib/ layering', () => {
  const edges = libImports();

  it('reads the imports of lib/ (sanity: the model consumes kv/cache)', () => {
    expect(edges.length).toBeGreaterThan(100);
    expect(edges).toContainEqual({ from: 'model/llama.ts', to: 'kv/cache.ts' });
  });

  it('every folder of lib/ has a layer', () => {
    const folders = fs.readdirSync(LIB, { withFileTypes: true }).map((e) => (e.isDirectory() ? e.name : e.name.replace(/\.ts$/, '')));
    expect(folders.filter((f) => !LAYERS.includes(f))).toEqual([]);
  });

  it('imports go only down the layers; kv/ never imports model/, model/ reaches kv/ only at kv/cache', () => {
    expect(violations(edges)).toEqual([]);
  });

  it('no import cycle between folders', () => {
    expect(folderCycle(edges)).toBeNull();
  });

  it('the checks fail on a back edge', () => {
    const back: Edge[] = [
      { from: 'model/llama.ts', to: 'kv/cache.ts' },
      { from: 'kv/quant.ts', to: 'model/safetensors.ts' },
    ];
    expect(violations(back)).toEqual(['kv/quant.ts -> model/safetensors.ts: kv/ imports model/, a layer above it']);
    expect(folderCycle(back)).toEqual(['model', 'kv', 'model']);
    expect(violations([{ from: 'model/load.ts', to: 'kv/contiguous.ts' }])).toHaveLength(1);
    expect(violations([{ from: 'newfolder/x.ts', to: 'kv/cache.ts' }])).toHaveLength(1);
  });
});
