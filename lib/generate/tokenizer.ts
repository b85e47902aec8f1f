// Tokenizer: a thin wrapper over @huggingface/tokenizers (pure JS) reading an HF directory's
// tokenizer.json, tokenizer_config.json and the eos ids of config.json / generation_config.json.

import * as fs from 'fs';
import * as path from 'path';

import type { Tokenizer as HFTokenizer } from '@huggingface/tokenizers' with { 'resolution-mode': 'require' };

// the package is ESM-typed but ships a CommonJS build, which require() picks
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Tokenizer: HFTokenizerClass } = require('@huggingface/tokenizers') as { Tokenizer: typeof HFTokenizer };

/** Text <-> token ids for one model (lesson: "tokens"). */
export interface Tokenizer {
  /** Encode text exactly, adding no special tokens (no bos). */
  encode(text: string): number[];
  /** Decode ids to text; special tokens are kept unless skipSpecialTokens. */
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** Ids that end generation (from config.json, generation_config.json, tokenizer_config.json). */
  readonly eosTokenIds: number[];
  readonly bosTokenId: number | null;
  /** Number of ids, added tokens included. */
  readonly vocabSize: number;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /**
   * The bytes a token stands for, when decoding is byte concatenation (byte-level BPE, as GPT-2
   * and Llama 3): lets a streaming decoder cost one lookup per token. Absent otherwise.
   */
  tokenBytes?(id: number): Uint8Array;
}

function readJson(file: string): Record<string, unknown> | null {
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

function ids(x: unknown): number[] {
  if (typeof x === 'number') return [x];
  if (Array.isArray(x)) return x.filter((v): v is number => typeof v === 'number');
  return [];
}

// tokenizer_config.json names special tokens either as strings or as {content: ...}
function tokenName(x: unknown): string | null {
  if (typeof x === 'string') return x;
  if (x && typeof x === 'object' && typeof (x as { content?: unknown }).content === 'string') {
    return (x as { content: string }).content;
  }
  return null;
}

/** Load the tokenizer of an HF model directory (needs tokenizer.json). */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const tokenizerJson = readJson(path.join(dir, 'tokenizer.json'));
  if (!tokenizerJson) throw new Error(`${dir}: no tokenizer.json`);
  const tokenizerConfig = readJson(path.join(dir, 'tokenizer_config.json')) ?? {};
  const config = readJson(path.join(dir, 'config.json')) ?? {};
  const generation = readJson(path.join(dir, 'generation_config.json')) ?? {};
  const tok = new HFTokenizerClass(tokenizerJson, tokenizerConfig);

  const eos = new Set<number>([...ids(config.eos_token_id), ...ids(generation.eos_token_id)]);
  const eosName = tokenName(tokenizerConfig.eos_token);
  const eosFromName = eosName === null ? undefined : tok.token_to_id(eosName);
  if (eosFromName !== undefined) eos.add(eosFromName);
  const bosName = tokenName(tokenizerConfig.bos_token);
  const bosTokenId = ids(config.bos_token_id)[0] ?? (bosName === null ? undefined : tok.token_to_id(bosName)) ?? null;

  return {
    encode: (text) => tok.encode(text, { add_special_tokens: false }).ids,
    decode: (tokenIds, options = {}) =>
      tokenIds.length === 0 ? '' : tok.decode([...tokenIds], { skip_special_tokens: options.skipSpecialTokens ?? false }),
    eosTokenIds: [...eos],
    bosTokenId,
    vocabSize: tok.get_vocab(true).size,
    tokenToId: (t) => tok.token_to_id(t),
    idToToken: (id) => tok.id_to_token(id),
    ...(byteLevelDecoder(tokenizerJson) ? { tokenBytes: tokenBytesTable(tok) } : {}),
  };
}

// decoding is byte concatenation when the decoder is ByteLevel alone
function byteLevelDecoder(json: Record<string, unknown>): boolean {
  const decoder = json.decoder as { type?: unknown } | null | undefined;
  return decoder?.type === 'ByteLevel';
}

// GPT-2's printable stand-ins for bytes: printable latin-1 maps to itself, the other bytes to
// code points from 256 up, in byte order
function unicodeToBytes(): Map<string, number> {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = new Map<string, number>();
  let next = 256;
  for (let b = 0; b < 256; b++) map.set(String.fromCodePoint(printable(b) ? b : next++), b);
  return map;
}

// a token's bytes, computed on first use: its stand-in characters mapped back (added tokens
// such as <|endoftext|> are their text in UTF-8, as the decoder writes them)
function tokenBytesTable(tok: HFTokenizer): (id: number) => Uint8Array {
  const toByte = unicodeToBytes();
  const added = new Set(((tok as unknown as { added_tokens?: { id: number }[] }).added_tokens ?? []).map((t) => t.id));
  const cache = new Map<number, Uint8Array>();
  return (id) => {
    let bytes = cache.get(id);
    if (bytes === undefined) {
      const token = tok.id_to_token(id);
      if (token === undefined) throw new Error(`token id ${id} is not in the vocabulary`);
      const chars = [...token];
      bytes = added.has(id) || chars.some((c) => !toByte.has(c)) ? new TextEncoder().encode(token) : Uint8Array.from(chars, (c) => toByte.get(c)!);
      cache.set(id, bytes);
    }
    return bytes;
  };
}
