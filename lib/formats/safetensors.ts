// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}}`, then the tensor
// bytes, offsets counted from the end of the header. Sharded checkpoints add
// `model.safetensors.index.json` with `weight_map: {name: shard file}`.

import * as fs from 'fs';
import * as path from 'path';

import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../formats/dtype';

/** Tensor dtypes this reader converts (to Float32Array, or Int32Array for I32). */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I32';

/** One entry of a safetensors header. */
export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  /** [begin, end) byte offsets from the start of the data section */
  dataOffsets: [number, number];
}

/** A tensor read from a checkpoint, in its stored (HF) layout. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** A named tensor to write with encodeSafetensors. */
export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array | Int32Array;
  /** stored dtype; Float32Array data may be written as F32, F16 or BF16 */
  dtype: SafetensorsDtype;
}

const BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, I32: 4 };

// ---- reading

/** Where a safetensors file's bytes come from: a file on disk or bytes in memory. */
interface ByteSource {
  size: number;
  /** a fresh buffer (byteOffset 0) holding [offset, offset + length) */
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

function fileSource(file: string): ByteSource {
  const fd = fs.openSync(file, 'r');
  return {
    size: fs.fstatSync(fd).size,
    read(offset, length) {
      const buf = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const n = fs.readSync(fd, buf, done, length - done, offset + done);
        if (n <= 0) throw new Error(`${file}: unexpected end of file`);
        done += n;
      }
      return buf;
    },
    close: () => fs.closeSync(fd),
  };
}

function bytesSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.byteLength,
    // a copy: callers make aligned typed-array views over the result
    read: (offset, length) => bytes.slice(offset, offset + length),
    close: () => {},
  };
}

/**
 * One safetensors file: the header is parsed at open, each tensor is read and converted to
 * fp32 on `get` (so a large checkpoint is never held twice). Call `close()` when done.
 */
export class SafetensorsFile {
  readonly entries: Map<string, SafetensorsEntry>;
  readonly metadata: Record<string, string>;
  private readonly dataStart: number;

  private constructor(
    private readonly src: ByteSource,
    readonly name: string,
  ) {
    if (src.size < 8) throw new Error(`${name}: not a safetensors file (${src.size} bytes)`);
    const lenBytes = src.read(0, 8);
    const view = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
    const headerLen = Number(view.getBigUint64(0, true));
    if (headerLen <= 0 || 8 + headerLen > src.size) {
      throw new Error(`${name}: bad header length ${headerLen} (file is ${src.size} bytes)`);
    }
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(new TextDecoder().decode(src.read(8, headerLen)));
    } catch (e) {
      throw new Error(`${name}: header is not valid JSON (${(e as Error).message})`);
    }
    this.dataStart = 8 + headerLen;
    this.metadata = (header.__metadata__ ?? {}) as Record<string, string>;
    this.entries = new Map();
    for (const [key, value] of Object.entries(header)) {
      if (key === '__metadata__') continue;
      const e = value as { dtype: string; shape: number[]; data_offsets: [number, number] };
      if (!e || typeof e.dtype !== 'string' || !Array.isArray(e.shape) || !e.data_offsets) {
        throw new Error(`${name}: malformed header entry for tensor '${key}'`);
      }
      const [b, end] = e.data_offsets;
      if (!(b >= 0 && end >= b && this.dataStart + end <= src.size)) {
        throw new Error(`${name}: tensor '${key}' data_offsets [${b}, ${end}] out of range`);
      }
      this.entries.set(key, { dtype: e.dtype, shape: e.shape, dataOffsets: [b, end] });
    }
  }

  /** Open a file on disk (reads only the header now). */
  static open(file: string): SafetensorsFile {
    const src = fileSource(file);
    try {
      return new SafetensorsFile(src, file);
    } catch (e) {
      src.close();
      throw e;
    }
  }

  /** Parse safetensors bytes already in memory (e.g. fetched in a browser). */
  static fromBytes(bytes: Uint8Array, name = 'safetensors'): SafetensorsFile {
    return new SafetensorsFile(bytesSource(bytes), name);
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** Read a float tensor (F32, F16 or BF16) as fp32, in its stored layout. */
  get(name: string): HostTensor {
    const e = this.entry(name);
    if (e.dtype === 'I32') {
      throw new Error(`${this.name}: tensor '${name}' is I32; use getInt32`);
    }
    const raw = this.raw(e);
    if (e.dtype === 'F32') return { shape: e.shape, data: new Float32Array(raw.buffer, 0, raw.byteLength / 4) };
    const u16 = new Uint16Array(raw.buffer, 0, raw.byteLength / 2);
    return { shape: e.shape, data: e.dtype === 'BF16' ? bf16ToF32(u16) : f16ToF32(u16) };
  }

  /** Read an I32 tensor. */
  getInt32(name: string): { shape: number[]; data: Int32Array } {
    const e = this.entry(name);
    if (e.dtype !== 'I32') throw new Error(`${this.name}: tensor '${name}' is ${e.dtype}, not I32`);
    const raw = this.raw(e);
    return { shape: e.shape, data: new Int32Array(raw.buffer, 0, raw.byteLength / 4) };
  }

  close(): void {
    this.src.close();
  }

  private entry(name: string): SafetensorsEntry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.name}: no tensor named '${name}'`);
    if (!(e.dtype in BYTES)) {
      throw new Error(`${this.name}: tensor '${name}' has unsupported dtype ${e.dtype} (supported: F32, F16, BF16, I32)`);
    }
    const n = e.shape.reduce((a, b) => a * b, 1);
    const want = n * BYTES[e.dtype as SafetensorsDtype];
    if (e.dataOffsets[1] - e.dataOffsets[0] !== want) {
      throw new Error(
        `${this.name}: tensor '${name}' ${e.dtype}[${e.shape}] needs ${want} bytes, ` +
          `data_offsets span ${e.dataOffsets[1] - e.dataOffsets[0]}`,
      );
    }
    return e;
  }

  // the tensor's bytes in a fresh buffer at offset 0, so typed-array views are aligned
  private raw(e: SafetensorsEntry): Uint8Array {
    const [b, end] = e.dataOffsets;
    return this.src.read(this.dataStart + b, end - b);
  }
}

/**
 * All tensors of a checkpoint directory: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json`. Shards are opened on first use.
 */
export class SafetensorsCheckpoint {
  private readonly files = new Map<string, SafetensorsFile>();
  private readonly where = new Map<string, string>();

  private constructor(private readonly dir: string) {}

  /** Open a directory (or a single .safetensors file). */
  static open(dirOrFile: string): SafetensorsCheckpoint {
    if (fs.statSync(dirOrFile).isFile()) {
      const ck = new SafetensorsCheckpoint(path.dirname(dirOrFile));
      ck.addFile(path.basename(dirOrFile));
      return ck;
    }
    const ck = new SafetensorsCheckpoint(dirOrFile);
    const index = path.join(dirOrFile, 'model.safetensors.index.json');
    const single = path.join(dirOrFile, 'model.safetensors');
    if (fs.existsSync(index)) {
      let map: Record<string, string>;
      try {
        map = JSON.parse(fs.readFileSync(index, 'utf8')).weight_map;
      } catch (e) {
        throw new Error(`${index}: not valid JSON (${(e as Error).message})`);
      }
      if (!map || typeof map !== 'object') throw new Error(`${index}: missing weight_map`);
      for (const [name, file] of Object.entries(map)) {
        if (!fs.existsSync(path.join(dirOrFile, file))) {
          throw new Error(`${index}: shard '${file}' (for tensor '${name}') does not exist`);
        }
        ck.where.set(name, file);
      }
    } else if (fs.existsSync(single)) {
      ck.addFile('model.safetensors');
    } else {
      const found = fs.readdirSync(dirOrFile).filter((f) => f.endsWith('.safetensors'));
      if (found.length !== 1) {
        throw new Error(
          `${dirOrFile}: no model.safetensors or model.safetensors.index.json` + (found.length ? ` (found ${found.join(', ')})` : ''),
        );
      }
      ck.addFile(found[0]);
    }
    return ck;
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  /** dtype of a tensor as stored (e.g. BF16). */
  dtype(name: string): string {
    return this.file(name).entries.get(name)!.dtype;
  }

  shape(name: string): number[] {
    return this.file(name).entries.get(name)!.shape;
  }

  /** Read one tensor as fp32 in its stored layout. */
  get(name: string): HostTensor {
    return this.file(name).get(name);
  }

  close(): void {
    for (const f of this.files.values()) f.close();
    this.files.clear();
  }

  private addFile(file: string): void {
    const f = SafetensorsFile.open(path.join(this.dir, file));
    this.files.set(file, f);
    for (const n of f.names()) this.where.set(n, file);
  }

  private file(name: string): SafetensorsFile {
    const file = this.where.get(name);
    if (file === undefined) throw new Error(`${this.dir}: checkpoint has no tensor '${name}'`);
    let f = this.files.get(file);
    if (!f) {
      f = SafetensorsFile.open(path.join(this.dir, file));
      this.files.set(file, f);
      if (!f.has(name)) throw new Error(`${f.name}: index says it holds '${name}' but it does not`);
    }
    return f;
  }
}

// ---- writing

/** Serialize tensors to safetensors bytes (header padded to 8 bytes, as HF does). */
export function encodeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const payloads: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (!t.data || t.data.length !== n) {
      throw new Error(`tensor '${t.name}': data has ${t.data?.length ?? 'no'} values, shape [${t.shape}] needs ${n}`);
    }
    let bytes: Uint8Array;
    if (t.dtype === 'I32') {
      if (!(t.data instanceof Int32Array)) throw new Error(`tensor '${t.name}': I32 needs Int32Array data`);
      bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    } else {
      if (!(t.data instanceof Float32Array)) throw new Error(`tensor '${t.name}': ${t.dtype} needs Float32Array data`);
      const typed = t.dtype === 'F32' ? t.data : t.dtype === 'F16' ? f32ToF16(t.data) : f32ToBf16(t.data);
      bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    payloads.push(bytes);
    offset += bytes.byteLength;
  }
  const json = JSON.stringify(header);
  const unpadded = new TextEncoder().encode(json).byteLength;
  const headerBytes = new TextEncoder().encode(json + ' '.repeat((8 - (unpadded % 8)) % 8));
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.byteLength;
  for (const p of payloads) {
    out.set(p, pos);
    pos += p.byteLength;
  }
  return out;
}

/** Write tensors to a .safetensors file. */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  fs.writeFileSync(file, encodeSafetensors(tensors, metadata));
}
