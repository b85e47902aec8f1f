// Benchmark helpers: statistics, machine facts without the hostname, the JSON record, the bar.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchFlags, machineInfo, progressBar, summarize, timeIt, writeBenchJson } from '../lib/bench/harness';
import { percentile } from '../lib/eval/stats';

describe('timing', () => {
  it('summarize: min, median, mean, p90, max', () => {
    const s = summarize([5, 1, 3, 2, 4]);
    expect([s.minMs, s.medianMs, s.meanMs, s.maxMs]).toEqual([1, 3, 3, 5]);
    expect(s.p90Ms).toBeCloseTo(4.6, 12); // interpolated, as percentile()
    expect(summarize([4, 1, 3, 2]).medianMs).toBe(2.5);
    const ten = summarize([10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    expect(ten.p90Ms).toBeCloseTo(9.1, 12);
    expect(() => summarize([])).toThrow(/no samples/);
  });

  it('percentile: 0..100, linear interpolation between ranks (numpy default); NaN for none', () => {
    expect(percentile([3, 1, 2], 50)).toBe(2);
    expect(percentile([4, 1, 3, 2], 50)).toBe(2.5);
    expect(percentile([1, 2, 3, 4, 5], 0)).toBe(1);
    expect(percentile([1, 2, 3, 4, 5], 100)).toBe(5);
    expect(percentile([0, 10], 25)).toBe(2.5);
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 101)).toThrow(/p must be in \[0, 100\]/);
  });

  it('timeIt runs warmup + repeats times and awaits async work', async () => {
    let calls = 0;
    const s = await timeIt(
      async () => {
        calls++;
        await new Promise((r) => setTimeout(r, 2));
      },
      { warmup: 2, repeats: 3 },
    );
    expect(calls).toBe(5);
    expect(s.repeats).toBe(3);
    expect(s.warmup).toBe(2);
    expect(s.minMs).toBeGreaterThanOrEqual(1);
    await expect(timeIt(() => 0, { repeats: 0 })).rejects.toThrow(/repeats/);
  });
});

describe('records', () => {
  it('machineInfo has the machine but not its name', () => {
    const m = machineInfo();
    expect(m.cpuCores).toBe(os.cpus().length);
    expect(m.node).toBe(process.versions.node);
    expect(m.totalMemoryBytes).toBe(os.totalmem());
    expect(JSON.stringify(m)).not.toContain(os.hostname());
  });

  it('writeBenchJson writes name, date, git, machine, result', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-'));
    const file = writeBenchJson('unit-test', { tokensPerSecond: 12.5 }, { dir });
    expect(file).toBe(path.join(dir, 'unit-test.json'));
    const rec = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(rec.name).toBe('unit-test');
    expect(rec.result).toEqual({ tokensPerSecond: 12.5 });
    expect(Date.parse(rec.date)).not.toBeNaN();
    expect(rec.machine.cpuCores).toBe(os.cpus().length);
    expect(rec.git?.commit).toMatch(/^[0-9a-f]{40}$/); // the tests run inside the checkout
    expect(() => writeBenchJson('../escape', {}, { dir })).toThrow(/bench name/);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('progressBar', () => {
  const fake = (isTTY: boolean) => {
    const out: string[] = [];
    return { out, stream: { isTTY, write: (s: string) => out.push(s) } as unknown as NodeJS.WriteStream };
  };

  it('on a terminal redraws in place', () => {
    const { out, stream } = fake(true);
    const bar = progressBar(4, 'gen', { stream, width: 4 });
    bar.tick();
    bar.tick(1, 'half');
    bar.done();
    expect(out).toHaveLength(3);
    expect(out[1]).toMatch(/^\rgen \[##\.\.\] 2\/4 [\d.]+s half/);
    expect(out[2].endsWith('\n')).toBe(true);
  });

  it('elsewhere prints one line at the end', () => {
    const { out, stream } = fake(false);
    const bar = progressBar(2, 'gen', { stream, width: 2 });
    bar.tick();
    bar.tick();
    bar.done('ok');
    bar.done();
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/^gen \[##\] 2\/2 [\d.]+s ok\n$/);
  });
});

describe('benchFlags', () => {
  it('reads values and switches; --threads is a thread count or all, anything else an error naming it', () => {
    const f = benchFlags(['--out', 'x.json', '--quick', '--threads', '2']);
    expect(f.value('out')).toBe('x.json');
    expect(f.has('quick')).toBe(true);
    expect(f.has('full')).toBe(false);
    expect(f.threads()).toBe(2);
    expect(benchFlags(['--threads', 'all']).threads()).toBe('all');
    expect(benchFlags([]).threads()).toBeUndefined();
    expect(() => benchFlags(['--threads', '0']).threads()).toThrow("--threads must be an integer in [1, 64] or 'all', got '0'");
    expect(() => benchFlags(['--threads', '--quick']).threads()).toThrow('--threads needs a value');
  });
});
