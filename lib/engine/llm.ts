// The user-facing engine API, mirroring vLLM (lesson 5, "continuous batching"):
//
//   const llm = await LLM.load({ model: 'data/models/target', maxNumSeqs: 8 });
//   const outs = await llm.generate(['In the beginning', 'And God said'], { temperature: 0, maxTokens: 32 });
//   for await (const ev of llm.stream('Blessed', { maxTokens: 16 })) process.stdout.write(ev.text);
//
// Lower level, for a server loop: addRequest / step / abort (see LLMEngine).

import * as fs from 'fs';
import * as path from 'path';

import * as tf from '@tensorflow/tfjs-core';

import { sharedGpu } from '../gpu/device';
import { loadGpuModel } from '../gpu/load';
import { loadModel, modelSource } from '../model/load';
import type { SamplingParamsInput } from '../generate/sampling';
import { loadTokenizer, type Tokenizer } from '../generate/tokenizer';
import type { Clock } from './clock';
import { resolveEngineConfig, type EngineConfigInput, type SpeculativeEngineConfigInput } from './config';
import type { TokenEvent } from '../generate/output';
import type { EngineModel } from './pagedModel';
import { capturedOptionsFor, LLMEngine, type AddRequestOptions, type EnginePrompt, type RequestOutput } from './llmEngine';

/** Options of LLM.load: the model, its tokenizer, a clock, and any engine setting. */
export interface LLMOptions extends Omit<EngineConfigInput, 'speculative'> {
  /**
   * speculative decoding (lesson 4): `{ draft: 'data/models/draft' | model | 'prompt-lookup', gamma: 4 | 'adaptive' }`;
   * a draft directory is loaded (and owned)
   */
  speculative?: (Omit<SpeculativeEngineConfigInput, 'draft'> & { draft: string | EngineModel }) | null;
  /** an HF model directory or preset name (loaded and owned), or a loaded model (not owned) */
  model: string | EngineModel;
  /**
   * Load named models onto the captured WebGPU path (lib/gpu: one command buffer per step)
   * instead of the eager tfjs path. Default: true when the tfjs backend is webgpu.
   */
  captured?: boolean;
  /** default: the model directory's tokenizer.json when there is one; null for ids only */
  tokenizer?: Tokenizer | string | null;
  /** default: a RealClock */
  clock?: Clock;
}

/**
 * vLLM-style offline and streaming generation over the engine (lesson 5, "continuous
 * batching"; its KV cache is lesson 3, "PagedAttention"). Call dispose() when done.
 */
export class LLM {
  /** outputs of requests that finished while generate()/stream() stepped for others: step() hands them out */
  private readonly unclaimed = new Map<string, RequestOutput>();

  private constructor(
    readonly engine: LLMEngine,
    private readonly ownsModel: boolean,
    private readonly ownedDraft: EngineModel | null = null,
  ) {}

  /** Load a model (or take a loaded one) and build the engine. */
  static async load(options: LLMOptions): Promise<LLM> {
    const { model, tokenizer, clock, speculative, captured, ...config } = options;
    const owns = typeof model === 'string';
    const onGpu = captured ?? tf.getBackend() === 'webgpu';
    // a captured model's buffers are sized for the engine's largest step
    const load = async (name: string): Promise<EngineModel> => {
      if (!onGpu) return loadModel(name);
      const engineConfig = resolveEngineConfig({ ...config, speculative: null }, modelSource(name).config.maxPositions);
      return loadGpuModel(await sharedGpu(), name, capturedOptionsFor(engineConfig));
    };
    const m = typeof model === 'string' ? await load(model) : model;
    let draft: EngineModel | null = null;
    try {
      const spec: SpeculativeEngineConfigInput | null = speculative
        ? { ...speculative, draft: typeof speculative.draft === 'string' && speculative.draft !== 'prompt-lookup' ? (draft = await load(speculative.draft)) : (speculative.draft as EngineModel | 'prompt-lookup') }
        : null;
      let tok: Tokenizer | null = null;
      if (tokenizer === undefined) {
        if (typeof model === 'string' && fs.existsSync(path.join(model, 'tokenizer.json'))) tok = await loadTokenizer(model);
      } else if (typeof tokenizer === 'string') {
        tok = await loadTokenizer(tokenizer);
      } else {
        tok = tokenizer;
      }
      return new LLM(new LLMEngine(m, tok, { ...config, speculative: spec }, clock), owns, draft);
    } catch (e) {
      if (owns) m.dispose();
      draft?.dispose();
      throw e;
    }
  }

  get model(): EngineModel {
    return this.engine.model;
  }

  /**
   * Generate for every prompt (one params for all, or one per prompt); returns one RequestOutput
   * per prompt, in order. A prompt that can never fit comes back with `error` set; the others run.
   */
  async generate(prompts: EnginePrompt | readonly EnginePrompt[], samplingParams: SamplingParamsInput | readonly SamplingParamsInput[] = {}): Promise<RequestOutput[]> {
    const list: readonly EnginePrompt[] = typeof prompts === 'string' || (Array.isArray(prompts) && typeof prompts[0] === 'number') ? [prompts as EnginePrompt] : (prompts as readonly EnginePrompt[]);
    if (list.length === 0) throw new Error('generate: give at least one prompt');
    if (Array.isArray(samplingParams) && samplingParams.length !== list.length) {
      throw new Error(`generate: ${samplingParams.length} sampling params for ${list.length} prompts`);
    }
    const paramsOf = (i: number): SamplingParamsInput => (Array.isArray(samplingParams) ? samplingParams[i] : (samplingParams as SamplingParamsInput));
    // validate everything before queueing anything
    const ids: string[] = [];
    try {
      list.forEach((p, i) => ids.push(this.engine.addRequest(p, paramsOf(i))));
    } catch (e) {
      for (const id of ids) this.engine.abort(id);
      await this.drain(new Set(ids));
      throw e;
    }
    const results = await this.drain(new Set(ids));
    return ids.map((id) => results.get(id)!);
  }

  /** Stream one request's tokens as they are sampled (all n completions, tagged by index). Breaking out aborts it. */
  async *stream(prompt: EnginePrompt, samplingParams: SamplingParamsInput = {}): AsyncGenerator<TokenEvent, RequestOutput, undefined> {
    const queue: TokenEvent[] = [];
    const id = this.engine.addRequest(prompt, samplingParams, { onToken: (e) => queue.push(e) });
    let result: RequestOutput | undefined;
    try {
      while (!result) {
        for (const out of await this.engine.step()) {
          if (out.requestId === id) result = out;
          else this.unclaimed.set(out.requestId, out);
        }
        yield* queue.splice(0);
      }
      return result;
    } finally {
      if (!result) this.engine.abort(id);
    }
  }

  /** Queue a request (see LLMEngine.addRequest). */
  addRequest(prompt: EnginePrompt, samplingParams: SamplingParamsInput = {}, options: AddRequestOptions = {}): string {
    return this.engine.addRequest(prompt, samplingParams, options);
  }

  /**
   * One engine step: schedule → run → postprocess; returns the requests it finished, and any that
   * finished earlier while generate() or stream() was stepping the engine for other requests.
   */
  async step(): Promise<RequestOutput[]> {
    const earlier = [...this.unclaimed.values()];
    this.unclaimed.clear();
    return [...earlier, ...(await this.engine.step())];
  }

  /** Abort a request; its blocks are freed now. */
  abort(requestId: string): boolean {
    return this.engine.abort(requestId);
  }

  hasUnfinished(): boolean {
    return this.engine.hasUnfinished();
  }

  /** Free the KV pool, and the model if LLM.load loaded it. */
  dispose(): void {
    this.engine.dispose();
    if (this.ownsModel) this.engine.model.dispose();
    this.ownedDraft?.dispose();
  }

  // step until every request in `ids` has finished; other requests progress too, and their
  // outputs wait in `unclaimed` for the next step() (nothing finished is dropped)
  private async drain(ids: Set<string>): Promise<Map<string, RequestOutput>> {
    const got = new Map<string, RequestOutput>();
    while (got.size < ids.size) {
      if (!this.engine.hasUnfinished()) throw new Error('engine: requests lost (nothing left to run)');
      for (const out of await this.engine.step()) (ids.has(out.requestId) ? got : this.unclaimed).set(out.requestId, out);
    }
    return got;
  }
}
