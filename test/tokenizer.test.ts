// The shipped byte-level BPE tokenizer, loaded with @huggingface/tokenizers in Node, encodes exactly
// as HF `tokenizers` (Python) did on the fixed text set and on every golden prompt.
import { describe, expect, it } from 'vitest';

import { loadTokenizer } from '../lib/generate/tokenizer';
import { loadGolden } from './golden';

const golden = loadGolden();

describe.each(['target', 'draft'])('tokenizer of data/models/%s', (name) => {
  it('encodes the fixed text set like HF tokenizers', async () => {
    const tok = await loadTokenizer(`data/models/${name}`);
    expect(golden.encodings.length).toBeGreaterThan(20);
    for (const e of golden.encodings) expect(tok.encode(e.text), JSON.stringify(e.text)).toEqual(e.ids);
  });

  it('encodes every golden prompt like HF tokenizers and decodes it back', async () => {
    const tok = await loadTokenizer(`data/models/${name}`);
    for (const p of golden.prompts) {
      expect(tok.encode(p.text), p.name).toEqual(p.ids);
      expect(tok.decode(p.ids)).toBe(p.text);
    }
  });

  it('has the documented vocabulary: 8192 ids, <|endoftext|> = 0 = eos', async () => {
    const tok = await loadTokenizer(`data/models/${name}`);
    expect(tok.vocabSize).toBe(8192);
    expect(tok.tokenToId('<|endoftext|>')).toBe(0);
    expect(tok.eosTokenIds).toContain(0);
  });
});
