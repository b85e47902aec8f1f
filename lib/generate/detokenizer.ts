// Incremental detokenization for streaming: turn one new token id at a time into the text it adds.
// Byte-level BPE tokens can end in the middle of a UTF-8 character, so a token may add nothing
// until the next one completes the character (as HF's TextStreamer and vLLM's detokenizer do).

import type { Tokenizer } from './tokenizer';

/**
 * Emits the text each new token adds, never half a character, at a cost that does not grow with
 * the sequence. A byte-level tokenizer (`tokenBytes`) streams each token's bytes through a UTF-8
 * decoder that holds back partial characters. Otherwise each push decodes a short window (vLLM's
 * prefix/read offsets): the text of ids[prefix..] minus the text of ids[prefix..read) is what the
 * new tokens add, and both offsets move forward once that text is complete.
 */
export class IncrementalDecoder {
  private readonly bytes: TextDecoder | null;
  private ids: number[] = [];
  /** first id of the window (where the last emitted text began) */
  private prefixOffset = 0;
  /** first id not yet emitted */
  private readOffset = 0;

  constructor(private readonly tokenizer: Pick<Tokenizer, 'decode' | 'tokenBytes'>) {
    this.bytes = tokenizer.tokenBytes ? new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }) : null;
  }

  /** Add a token; returns the new text it completes ('' while a character is still partial). */
  push(id: number): string {
    if (this.bytes) return this.bytes.decode(this.tokenizer.tokenBytes!(id), { stream: true });
    this.ids.push(id);
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const text = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    if (text.length <= prefix.length || text.endsWith('\uFFFD')) return ''; // a partial UTF-8 sequence: wait for more bytes
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return text.slice(prefix.length);
  }

  /** Whatever is still held back (a trailing partial character), e.g. when generation ends. */
  flush(): string {
    if (this.bytes) return this.bytes.decode();
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const text = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return text.slice(prefix.length);
  }
}
