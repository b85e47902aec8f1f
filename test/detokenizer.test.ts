// The streaming detokenizer, both ways (a byte-level tokenizer's bytes through a streaming UTF-8
// decoder; short decoded windows for any other): the deltas it emits, joined, are exactly the
// full decode, never half a character, and a push costs the same however long the text grows.
import { describe, expect, it } from 'vitest';

import { IncrementalDecoder, Rng, loadTokenizer, type Tokenizer } from '../lib';

describe('IncrementalDecoder', async () => {
  const tokenizer = await loadTokenizer('data/models/target');

  function stream(ids: number[], tok: Pick<Tokenizer, 'decode'> = tokenizer): string[] {
    const d = new IncrementalDecoder(tok);
    const out = ids.map((id) => d.push(id));
    out.push(d.flush());
    return out;
  }

  const windowed = { decode: (w: readonly number[]) => tokenizer.decode(w) }; // no tokenBytes: the window path

  it('the shipped tokenizer is byte-level: its bytes path is the one the engine uses', () => {
    expect(tokenizer.tokenBytes).toBeTypeOf('function');
    expect(new TextDecoder().decode(tokenizer.tokenBytes!(tokenizer.encode(' the')[0]))).toBe(' the');
  });

  it.each([['bytes', tokenizer], ['windows', windowed]] as const)('joined deltas equal the decode of the whole sequence (%s; text, and random ids that split characters)', (_, tok) => {
    const text = 'In the beginning God created the heaven and the earth.\nAnd the earth was without form — “void” — é ü 日本.';
    const rng = new Rng(7);
    const random = Array.from({ length: 400 }, () => rng.nextUint32() % tokenizer.vocabSize);
    for (const ids of [tokenizer.encode(text), random]) {
      const deltas = stream(ids, tok);
      expect(deltas.join('')).toBe(tokenizer.decode(ids));
      for (const d of deltas.slice(0, -1)) expect(d.includes('\uFFFD') && !tokenizer.decode(ids).includes('\uFFFD')).toBe(false);
    }
  });

  it.each([['bytes', tokenizer], ['windows', windowed]] as const)('holds back a partial UTF-8 character until the token that completes it (%s)', (_, tok) => {
    const ids = tokenizer.encode('日本');
    expect(ids.length).toBeGreaterThan(2); // byte-level: the characters span several tokens
    const deltas = stream(ids, tok);
    for (const d of deltas) expect(d).not.toContain('\uFFFD');
    expect(deltas.join('')).toBe('日本');
  });

  it('the window path decodes a short window per token however long the text grows (no newline needed)', () => {
    const ids = tokenizer.encode('and the '.repeat(300)); // hundreds of tokens, no newline
    let longest = 0;
    const counting = { decode: (w: readonly number[]) => ((longest = Math.max(longest, w.length)), tokenizer.decode(w)) };
    expect(stream(ids, counting).join('')).toBe(tokenizer.decode(ids));
    expect(ids.length).toBeGreaterThan(300);
    expect(longest).toBeLessThanOrEqual(4);
  });
});
