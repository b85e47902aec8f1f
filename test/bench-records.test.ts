// Shape of the committed benchmark records (data/bench): every record names its machine, commit and
// date; the GPU records (data/bench/webgpu, made on an H200 through WebGPU) name the adapter. CI never
// runs the GPU: it checks that what was recorded there is complete and self-consistent.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { h200Record } from '../lib/viz/lessons';

const readJson = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8'));
const records = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => path.join(dir, f));

describe('benchmark records', () => {
  const all = [...records('data/bench'), ...records('data/bench/webgpu')];

  it.each(all)('%s names its machine, commit, date and result', (file) => {
    const r = readJson(file);
    expect(r.name).toBe(path.basename(file, '.json'));
    expect(Number.isNaN(Date.parse(r.date))).toBe(false);
    expect(r.git.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(r.machine.cpuCores).toBeGreaterThan(0);
    expect(typeof r.machine.node).toBe('string');
    expect(r.result).toBeTypeOf('object');
  });

  it('every CPU benchmark has a record: core, kv, serve, spec, spec-engine, oracle', () => {
    for (const name of ['core', 'kv', 'serve', 'spec', 'spec-engine', 'oracle-wasm']) expect(fs.existsSync(`data/bench/${name}.json`), name).toBe(true);
  });

  it('GPU records were made through WebGPU on a named adapter', () => {
    const gpu = records('data/bench/webgpu');
    expect(gpu.length).toBeGreaterThanOrEqual(5);
    for (const file of gpu) {
      const r = readJson(file);
      expect(r.machine.backend.adapter.device, file).toMatch(/\S/);
      expect(r.machine.backend.limits.maxBufferSize, file).toBeGreaterThan(0);
    }
  });

  it('h200Record reads a GPU record by name and labels it with its adapter and commit (the lessons show the label)', () => {
    const r = h200Record<{ poisson: unknown }>('serve-webgpu');
    const raw = readJson('data/bench/webgpu/serve-webgpu.json');
    expect(r.file).toBe('data/bench/webgpu/serve-webgpu.json');
    expect(r.label).toBe(`${raw.machine.backend.adapter.vendor} ${raw.machine.backend.adapter.device}, commit ${raw.git.commit.slice(0, 7)}, ${raw.date.slice(0, 10)}`);
    expect(r.source).toEqual({ kind: 'h200', detail: `${r.file} (${r.label})` });
    expect(r.result.poisson).toEqual(raw.result.poisson);
    expect(() => h200Record('no-such-record')).toThrow(/no-such-record/);
  });

  it('the WebGPU oracle check agrees with HF on every golden token, logits within 1e-3', () => {
    const r = readJson('data/bench/webgpu/oracle-webgpu.json').result;
    const golden = readJson('data/golden/golden.json');
    expect(r.reports.map((x: { model: string }) => x.model)).toEqual(['target', 'draft']);
    for (const rep of r.reports) {
      expect(rep.prompts).toBe(golden.prompts.length);
      expect(rep.tokens).toBe(golden.prompts.length * 64);
      expect(rep.failures).toEqual([]);
      expect(rep.tokensAgreeing + 64 * rep.ties.length).toBeGreaterThanOrEqual(rep.tokens - 64 * rep.ties.length);
      expect(rep.maxAbsError).toBeLessThanOrEqual(1e-3);
      expect(rep.rows).toBeGreaterThan(0);
    }
  });

  // bench:peers (issue 11): ours vs llama.cpp on CPU, ours vs HF transformers on the GPU; one record per machine
  const peerRecords = ['data/bench/peers.json', 'data/bench/webgpu/peers-webgpu.json'].filter((f) => fs.existsSync(f));

  it.each(peerRecords)('%s: every peer row is measured or says why not, and tok/s = batch x 1000 / step', (file) => {
    const r = readJson(file).result;
    expect(r.rows.length, file).toBeGreaterThan(0);
    expect(r.settings.promptTokens).toBeGreaterThan(0);
    for (const row of r.rows) {
      const what = `${file} ${row.peer} ${row.variant} ${row.model} ${row.weights} b${row.batch} t${row.threads}`;
      expect(['ours', 'llama.cpp', 'hf'], what).toContain(row.peer);
      expect(['ok', 'error', 'skipped'], what).toContain(row.status);
      expect(row.batch, what).toBeGreaterThanOrEqual(1);
      if (row.status !== 'ok') {
        expect(row.note, what).toMatch(/\S/);
        continue;
      }
      expect(row.stepMsMedian, what).toBeGreaterThan(0);
      expect(row.tokPerS, what).toBeCloseTo((row.batch * 1000) / row.stepMsMedian, 3);
    }
    for (const c of r.comparisons) {
      const ours = r.rows.find((x: { peer: string; model: string; batch: number }) => x.peer === 'ours' && x.model === c.model && x.batch === c.batch);
      expect(ours, `${file} ${c.ours}`).toBeDefined();
      expect(c.ratio).toBeGreaterThan(0);
    }
  });

  it('the CPU peers record holds ours at batch 1 and 8 and llama.cpp (F32, F16; 1 thread and all cores) on the target', () => {
    if (!fs.existsSync('data/bench/peers.json')) return;
    const r = readJson('data/bench/peers.json').result;
    const ok = (f: (x: any) => boolean) => r.rows.filter((x: any) => x.status === 'ok' && x.model === 'target' && f(x));
    for (const b of [1, 8]) expect(ok((x) => x.peer === 'ours' && x.batch === b).length, `ours batch ${b}`).toBeGreaterThan(0);
    const all = r.llamacpp.cpuMathCores;
    for (const type of ['F32', 'F16']) {
      for (const t of new Set([1, all])) expect(ok((x) => x.peer === 'llama.cpp' && x.weights === type && x.threads === t).length, `${type} ${t} threads`).toBe(1);
    }
  });

  it('the GPU peers record, when HF rows are merged, carries the HF run from a named GPU', () => {
    if (!fs.existsSync('data/bench/webgpu/peers-webgpu.json')) return;
    const r = readJson('data/bench/webgpu/peers-webgpu.json').result;
    expect(r.rows.some((x: any) => x.peer === 'ours' && x.status === 'ok')).toBe(true);
    if (r.hf === null) return;
    expect(r.hf.name).toBe('hf-peers');
    expect(r.hf.machine.gpu).toMatch(/\S/);
    expect(r.hf.machine.torch).toMatch(/\S/);
    expect(r.hf.machine.transformers).toMatch(/\S/);
    expect(r.rows.filter((x: any) => x.peer === 'hf').length).toBe(r.hf.rows.length);
  });

  // issue 11, item 6: the engine benchmarks on the captured path (checked when a record carries them)
  const serveRecords = ['data/bench/serve.json', 'data/bench/webgpu/serve-webgpu.json'].filter((f) => fs.existsSync(f));

  it.each(serveRecords)('%s: the Poisson steady state, when present, compares both schedulers at equal KV memory', (file) => {
    const r = readJson(file).result;
    if (!r.poisson) return;
    const p = r.poisson;
    expect(p.spec.arrival.kind).toBe('poisson');
    for (const policy of ['continuous', 'static']) {
      const x = p[policy];
      expect(x.windowMs, `${file} ${policy}`).toBeGreaterThan(0);
      expect(x.windowMs).toBeLessThanOrEqual(x.wholeRunMs + 1e-6);
      expect(x.windowOutputTokens).toBeLessThanOrEqual(x.wholeRunOutputTokens);
      expect(x.steadyStateOutputTokensPerSecond).toBeCloseTo((1000 * x.windowOutputTokens) / x.windowMs, 3);
      expect(x.summary.outputTokens).toBe(p.continuous.summary.outputTokens);
    }
    expect(p.steadyStateRatio).toBeCloseTo(p.continuous.steadyStateOutputTokensPerSecond / p.static.steadyStateOutputTokensPerSecond, 3);
    expect(p.wholeRunRatio).toBeCloseTo(p.continuous.wholeRunOutputTokensPerSecond / p.static.wholeRunOutputTokensPerSecond, 3);
    if (p.ratioParts) {
      // the two factors multiply back to the ratio, and each comes from its policy's window
      const parts = p.ratioParts;
      expect(parts.tokensPerStepRatio / parts.stepMsRatio).toBeCloseTo(p.steadyStateRatio, 6);
      for (const policy of ['continuous', 'static']) {
        expect(parts[policy].outputTokensPerStep).toBeCloseTo(p[policy].windowOutputTokens / p[policy].windowSteps, 6);
        expect(parts[policy].msPerStep).toBeCloseTo(p[policy].windowMs / p[policy].windowSteps, 6);
      }
    }
    if (p.withoutOverlap) {
      const w = p.withoutOverlap;
      expect(w.steadyStateRatio).toBeCloseTo(w.continuous.steadyStateOutputTokensPerSecond / w.static.steadyStateOutputTokensPerSecond, 6);
      expect(w.overlapSpeedup.continuous).toBeCloseTo(p.continuous.steadyStateOutputTokensPerSecond / w.continuous.steadyStateOutputTokensPerSecond, 6);
    }
    if (r.path === 'captured') {
      expect(r.adapter.software, file).toBe(false);
      for (const row of r.stepTime) expect(row.ratio).toBeCloseTo(row.pagedMedianMs / row.contiguousMedianMs, 3);
    }
  });

  it('the spec records, when they hold the captured path, name a hardware adapter and a best gamma', () => {
    for (const file of ['data/bench/webgpu/spec-engine-webgpu.json', 'data/bench/webgpu/spec-webgpu.json']) {
      if (!fs.existsSync(file)) continue;
      const r = readJson(file).result;
      const cap = file.includes('spec-engine') ? (r.path === 'captured' ? r : null) : typeof r.captured === 'object' ? r.captured : null;
      if (!cap) continue;
      expect(cap.adapter.software, file).toBe(false);
      const best = file.includes('spec-engine') ? cap.best.find((b: { batch: number }) => b.batch === 1) : cap.best;
      expect(best.gamma, file).toBeGreaterThanOrEqual(1);
      expect(cap.runs.length, file).toBeGreaterThan(1);
      // spec-engine on the captured path races the plain engine without overlapped steps too
      if (file.includes('spec-engine') && cap.bestVsPlainWithoutOverlap) {
        for (const b of cap.bestVsPlainWithoutOverlap) {
          const plain = cap.runs.find((x: { batch: number; config: string }) => x.batch === b.batch && x.config === 'plain, no overlap');
          expect(plain, `${file} B=${b.batch}`).toBeDefined();
          const bestRow = cap.best.find((x: { batch: number }) => x.batch === b.batch);
          expect(b.speedup).toBeCloseTo(bestRow.decodeTokensPerSecond / plain.decodeTokensPerSecond, 2);
        }
      }
    }
  });

  it('roofline rows are internally consistent (predicted = bandwidth / bytes per token)', () => {
    for (const file of ['data/bench/core.json', 'data/bench/webgpu/core-webgpu.json']) {
      const r = readJson(file).result;
      const bw = r.roofs.bandwidthGBps;
      expect(bw).toBeGreaterThan(0);
      for (const row of r.roofline) {
        const bytes = row.bytesPerToken;
        expect(row.predictedTokS, `${file} ${row.model}`).toBeCloseTo((bw * 1e9) / bytes, -1);
        expect(row.fractionOfRoofline).toBeCloseTo(row.measuredTokS / row.predictedTokS, 2);
      }
    }
  });
});
