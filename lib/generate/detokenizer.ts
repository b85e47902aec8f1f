// Incremental detokenization for streaming: turn one new token id at a time into the text it adds.
// Byte-level BPE tokens can end in the middle of a UTF-8 character, so a token may add nothing
// until the next one completes the character (as HF's TextStreamer and vLLM's detokenizer do).

import type { Tokenizer } from './tokenizer';

/** Emits the text each new token adds, never half a character. */
export class IncrementalDecoder {
  private ids: number[] = [];
  /** first id of the window decoded each time (moved forward at every newline) */
  private start = 0;
  /** characters of the window's text already emitted */
  private printed = 0;

  constructor(private readonly tokenizer: Pick<Tokenizer, 'decode'>) {}

  /** Add a token; returns the new text it completes ('' while a character is still partial). */
  push(id: number): string {
    this.ids.push(id);
    const text = this.tokenizer.decode(this.ids.slice(this.start));
    if (text.endsWith('\uFFFD')) return ''; // a partial UTF-8 sequence: wait for more bytes
    const delta = text.slice(this.printed);
    if (text.endsWith('\n')) {
      this.start = this.ids.length; // keep the decoded window short
      this.printed = 0;
    } else {
      this.printed = text.length;
    }
    return delta;
  }

  /** Whatever is still held back (a trailing partial character), e.g. when generation ends. */
  flush(): string {
    const text = this.tokenizer.decode(this.ids.slice(this.start));
    const rest = text.slice(this.printed);
    this.start = this.ids.length;
    this.printed = 0;
    return rest;
  }
}
