"""Trains inference-lab's model zoo on the GPU machine and computes the HF-transformers oracle.

One script, one run, everything the repo ships under data/ (see scripts/train/README.md):
  1. a byte-level BPE tokenizer (GPT-2 style) trained on the train split only;
  2. `target`: a ~16M-parameter Llama (8 layers, GQA 6 query / 2 KV heads, SwiGLU, RoPE, tied
     embeddings, context 1024), plain next-token cross-entropy;
  3. `draft`: 2-layer Llama candidates (~1.5M and ~2.5M parameters) distilled from the target
     (cross-entropy + KL to the target's distribution); the smallest that reaches the agreement
     goal is shipped as `draft`;
  3b. the chosen draft, distilled again on the target's own continuations of train-split prompts
     (on-policy: the only text speculative decoding asks the draft about);
  4. evaluation of the shipped (BF16-rounded) weights reloaded with `from_pretrained`: validation
     and test perplexity, draft/target greedy agreement;
  5. golden oracle outputs for ~20 prompts in fp32 (data/golden/).

usage: python3 scripts/train/train.py --corpus data/corpus --out OUT [--smoke] [--draft-only data]
"""

import argparse
import json
import math
import os
import platform
import shutil
import time

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
import tokenizers
import transformers
from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

EOT = "<|endoftext|>"
VOCAB_SIZE = 8192
CONTEXT = 1024
DEV = "cuda"

# ---- model configs (the one place sizes are chosen)

TARGET = dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=8,
              num_attention_heads=6, num_key_value_heads=2)
DRAFTS = {  # candidates for `draft`, smallest first; the first to reach AGREEMENT_GOAL is shipped
    "draft-160": dict(hidden_size=160, intermediate_size=432, num_hidden_layers=2,
                      num_attention_heads=5, num_key_value_heads=1),
    "draft-256": dict(hidden_size=256, intermediate_size=640, num_hidden_layers=2,
                      num_attention_heads=8, num_key_value_heads=2),
}
# Drafts shipped beside `draft`, each in models/<name>, each through both stages (3 and 3b).
# draft-1x384: one layer as wide as the target, its embedding started from the target's. On the
# captured GPU path a step costs about five dispatches a layer whatever the width, so there depth,
# not width, is what a draft pays for (EAGLE and Medusa draft with one layer for the same reason);
# on CPU the bytes of its weights count instead. Lesson 4 measures both drafts.
EXTRA_DRAFTS = {
    "draft-1x384": dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=1,
                        num_attention_heads=6, num_key_value_heads=2),
}
AGREEMENT_GOAL = 0.60
# ~0.9M training tokens overfit a 16M model within a few epochs: regularize with dropout (embeddings,
# residual branches, attention probabilities) and keep the best validation checkpoint; the run tries
# these dropout rates and ships the one with the lowest validation loss.
TARGET_DROPOUTS = [0.2, 0.3]


def llama_config(sizes: dict) -> LlamaConfig:
    return LlamaConfig(vocab_size=VOCAB_SIZE, max_position_embeddings=CONTEXT, rms_norm_eps=1e-5,
                       rope_theta=10000.0, tie_word_embeddings=True, hidden_act="silu",
                       attention_bias=False, mlp_bias=False, bos_token_id=0, eos_token_id=0,
                       pad_token_id=None, **sizes)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- tokenizer

def train_tokenizer(train_path: str) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train([train_path], trainer)
    assert tok.token_to_id(EOT) == 0 and tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def save_tokenizer(tok: Tokenizer, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT, "eos_token": EOT,
                   "unk_token": EOT, "model_max_length": CONTEXT, "add_bos_token": False,
                   "add_eos_token": False, "clean_up_tokenization_spaces": False}, f, indent=2)


TOKENIZER_TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And the LORD said unto Moses,",
    "Hello, world! How's it going?",
    "  leading spaces and   several   gaps  ",
    "line one\nline two\n\nline four\n",
    "tabs\tand\r\nwindows newlines",
    "Numbers: 0 1 12 123 1234 12345 3.14159 1,000,000",
    "Punctuation!?... (brackets) [square] {curly} <angle> \"quotes\" 'single' -- dashes",
    "it's they're we've I'm you'll he'd",
    "CamelCaseWord snake_case_word kebab-case-word",
    "Unicode: caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber \u00c5ngstr\u00f6m",
    "Greek \u0391\u03b2\u03b3 and Hebrew \u05e9\u05dc\u05d5\u05dd and CJK \u4e2d\u6587",
    "Emoji: \U0001F600 \U0001F44D\U0001F3FD \u2764\ufe0f",
    "<|endoftext|>",
    "end of one chapter.\n<|endoftext|>\nGenesis 2\n\nThus the heavens",
    "",
    " ",
    "\n",
    "a",
    "Verily, verily, I say unto thee, Except a man be born again, he cannot see the kingdom of God.",
    "Thou shalt not kill. Thou shalt not commit adultery. Thou shalt not steal.",
    "The quick brown fox jumps over the lazy dog 1234567890 times.",
    "https://example.com/path?query=1&other=two#frag",
    "x = f(y) + g[z] * 2 ** 8 // 3;",
]


# ---- data

def load_split(tok: Tokenizer, path: str) -> torch.Tensor:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return torch.tensor(tok.encode(text).ids, dtype=torch.long)


def random_batch(stream: torch.Tensor, batch: int, gen: torch.Generator):
    starts = torch.randint(0, len(stream) - CONTEXT - 1, (batch,), generator=gen)
    x = torch.stack([stream[s:s + CONTEXT + 1] for s in starts.tolist()]).to(DEV)
    return x[:, :-1], x[:, 1:]


def windows(stream: torch.Tensor):
    """Non-overlapping windows of CONTEXT+1 tokens (the last one shorter): the perplexity protocol."""
    for s in range(0, len(stream) - 1, CONTEXT):
        w = stream[s:s + CONTEXT + 1]
        if len(w) >= 2:
            yield w.to(DEV)


@torch.no_grad()
def perplexity(model, stream: torch.Tensor, autocast: bool) -> dict:
    model.eval()
    nll, count = 0.0, 0
    for w in windows(stream):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(w[None, :-1]).logits[0].float()
        nll += F.cross_entropy(logits, w[1:], reduction="sum").item()
        count += len(w) - 1
    return {"nll": nll / count, "ppl": math.exp(nll / count), "tokens": count}


# ---- training

def add_residual_dropout(model, p: float):
    """GPT-2 style dropout on the embeddings and on each attention/MLP output, during training only
    (hooks, so the saved model stays a plain LlamaForCausalLM)."""
    def hook(module, inputs, out):
        if not module.training:
            return out
        if isinstance(out, tuple):
            return (F.dropout(out[0], p, True),) + tuple(out[1:])
        return F.dropout(out, p, True)
    mods = [model.model.embed_tokens] + [m for layer in model.model.layers for m in (layer.self_attn, layer.mlp)]
    return [m.register_forward_hook(hook) for m in mods]


def train(model, name, train_ids, val_ids, steps, batch, lr, eval_every, patience, teacher=None,
          kd_weight=0.0, dropout=0.0, seed=0, batch_fn=None, eval_fn=None):
    """AdamW with warm-up and cosine decay; keeps the checkpoint with the best evaluation.
    batch_fn(step, gen) -> (x, y, kd_weight) replaces random windows of train_ids; eval_fn(model) ->
    (loss, fields) replaces validation perplexity (lower loss is better)."""
    batch_fn = batch_fn or (lambda step, gen: random_batch(train_ids, batch, gen) + (kd_weight,))
    eval_fn = eval_fn or (lambda m: (lambda v: (v["nll"], {"ppl": v["ppl"]}))(perplexity(m, val_ids, autocast=True)))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    hooks = add_residual_dropout(model, dropout) if dropout > 0 else []
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)
    sched = lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    log = {"name": name, "params": n_params(model), "batch": batch, "context": CONTEXT, "lr": lr,
           "dropout": dropout, "kd_weight": kd_weight, "train": [], "validation": []}
    best = (float("inf"), None, -1)
    t0 = time.time()
    for step in range(steps):
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr * sched(step)
        x, y, kd = batch_fn(step, gen)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x).logits.float()
            ce = F.cross_entropy(logits.view(-1, VOCAB_SIZE), y.reshape(-1))
            loss = ce
            if teacher is not None and kd > 0:
                with torch.no_grad():
                    t_logp = F.log_softmax(teacher(x).logits.float(), -1)
                kl = F.kl_div(F.log_softmax(logits, -1).view(-1, VOCAB_SIZE), t_logp.view(-1, VOCAB_SIZE),
                              log_target=True, reduction="batchmean")
                loss = (1 - kd) * ce + kd * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0:
            log["train"].append({"step": step, "tokens": (step + 1) * batch * CONTEXT, "loss": ce.item(),
                                 "lr": lr * sched(step), "seconds": round(time.time() - t0, 2)})
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            v_loss, fields = eval_fn(model)
            log["validation"].append({"step": step + 1, "tokens": (step + 1) * batch * CONTEXT, "loss": v_loss,
                                      **fields, "seconds": round(time.time() - t0, 2)})
            shown = " ".join(f"{k} {v:.3f}" for k, v in fields.items())
            print(f"[{name}] step {step + 1}/{steps} train {ce.item():.3f} val {v_loss:.3f} ({shown}) {time.time() - t0:.0f}s", flush=True)
            if v_loss < best[0]:
                best = (v_loss, {k: t.detach().clone() for k, t in model.state_dict().items()}, step + 1)
            elif step + 1 - best[2] >= patience:
                print(f"[{name}] early stop: no improvement for {patience} steps", flush=True)
                break
    for h in hooks:
        h.remove()
    model.load_state_dict(best[1])
    log["best_step"] = best[2]
    log["seconds"] = round(time.time() - t0, 1)
    return log


def save_model(model, tok: Tokenizer, out_dir: str) -> None:
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=0, eos_token_id=0, do_sample=False,
                                               max_new_tokens=256)
    model.save_pretrained(out_dir, safe_serialization=True)
    save_tokenizer(tok, out_dir)


def load_oracle(path: str):
    """The shipped checkpoint, reloaded unchanged, upcast to fp32, eager attention."""
    return LlamaForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").to(DEV).eval()


# ---- evaluation

@torch.no_grad()
def agreement_teacher_forced(draft, target, stream) -> dict:
    same, count = 0, 0
    for w in windows(stream):
        a = draft(w[None, :-1]).logits[0].argmax(-1)
        b = target(w[None, :-1]).logits[0].argmax(-1)
        same += (a == b).sum().item()
        count += len(a)
    return {"agreement": same / count, "positions": count}


@torch.no_grad()
def greedy(model, ids: list, n: int):
    """Greedy continuation by full recomputation each step (the plainest possible oracle)."""
    seq = list(ids)
    out, margins = [], []
    for _ in range(n):
        logits = model(torch.tensor([seq], device=DEV)).logits[0, -1]
        top = torch.topk(logits, 2)
        out.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        seq.append(out[-1])
    return out, margins


def tokens_per_step(agree: list, gamma: int) -> float:
    """Greedy speculative decoding replayed on a target greedy continuation: agree[i] says whether the
    draft's greedy pick at position i (given the target's own prefix) equals the target's token. A step
    accepts the run of agreeing drafts (at most gamma) and adds the target's own next token."""
    i = steps = 0
    while i < len(agree):
        k = 0
        while k < gamma and i + k < len(agree) and agree[i + k]:
            k += 1
        i += k + 1
        steps += 1
    return len(agree) / steps


def tokens_per_step_by_gamma(rows: list, gammas=(1, 2, 3, 4, 5, 6, 8)) -> dict:
    """tokens_per_step over several continuations (agreement rows), pooled: all tokens / all steps."""
    return {str(g): sum(len(r) for r in rows) / sum(len(r) / tokens_per_step(r, g) for r in rows) for g in gammas}


# ---- on-policy distillation: the draft learns the target's distribution on the target's own text
# (speculative decoding only ever asks the draft about text the target writes; DistillSpec, EAGLE and
# Medusa-2 train their drafts on target generations for the same reason)

ON_POLICY = dict(calls=96, per_call=256, new_tokens=128, prompt_tokens=(8, 128), temperatures=(0.0, 1.0),
                 steps=8000, batch=64, lr=1e-3, natural_every=4, eval_every=500, patience=2000,
                 val_prompts=64)


@torch.no_grad()
def target_rollouts(target, stream: torch.Tensor, calls: int, per_call: int, new_tokens: int,
                    prompt_tokens: tuple, temperatures: tuple, seed: int) -> list:
    """`calls` batches of `per_call` continuations of random prompts from `stream` (one prompt length a
    batch, drawn from prompt_tokens); temperature 0 is greedy, the rest sample (top-k/top-p off)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for c in range(calls):
        n = int(torch.randint(prompt_tokens[0], prompt_tokens[1] + 1, (1,), generator=gen))
        starts = torch.randint(0, len(stream) - n, (per_call,), generator=gen).tolist()
        ids = torch.stack([stream[s:s + n] for s in starts]).to(DEV)
        t = temperatures[c % len(temperatures)]
        torch.manual_seed(seed + c)
        step_ids, past, picked = ids, None, [ids]
        for _ in range(new_tokens):  # KV-cached decoding; no end-of-text stop, every row is full length
            o = target(step_ids, past_key_values=past, use_cache=True)
            past, logits = o.past_key_values, o.logits[:, -1].float()
            step_ids = (logits.argmax(-1, keepdim=True) if t == 0 else
                        torch.multinomial(F.softmax(logits / t, -1), 1))
            picked.append(step_ids)
        seqs = torch.cat(picked, 1)
        out.append({"ids": seqs.cpu(), "prompt": n, "temperature": t})
    return out


@torch.no_grad()
def greedy_agreement(draft, rollouts: list) -> dict:
    """On target greedy rollouts: how often the draft's greedy pick equals the target's next token
    (positions after the prompt), and the tokens a greedy speculative step would emit per gamma."""
    rows = []
    for r in rollouts:
        seqs = r["ids"].to(DEV)
        picks = draft(seqs[:, :-1]).logits.argmax(-1)[:, r["prompt"] - 1:]
        rows += (picks == seqs[:, r["prompt"]:]).cpu().tolist()
    same, total = sum(map(sum, rows)), sum(map(len, rows))
    return {"agreement": same / total, "positions": total, "tokens_per_step": tokens_per_step_by_gamma(rows)}


def distill_on_policy(draft, target, name: str, train_ids, val_ids, smoke: bool):
    """Fine-tunes the draft on target rollouts from train-split prompts (pure KL to the target), with
    every `natural_every`-th batch a plain train-split window (0.5 CE + 0.5 KL, as in the first stage)
    so the draft stays a language model. The checkpoint kept is the one that best agrees with the
    target's greedy continuations of validation-split prompts."""
    cfg = dict(ON_POLICY, **(dict(calls=4, per_call=16, new_tokens=16, steps=20, eval_every=10, val_prompts=8)
                             if smoke else {}))
    t0 = time.time()
    rollouts = target_rollouts(target, train_ids, cfg["calls"], cfg["per_call"], cfg["new_tokens"],
                               cfg["prompt_tokens"], cfg["temperatures"], seed=2)
    val_rollouts = target_rollouts(target, val_ids, max(1, cfg["val_prompts"] // 32), min(32, cfg["val_prompts"]),
                                   cfg["new_tokens"], cfg["prompt_tokens"], (0.0,), seed=3)
    gen_seconds = round(time.time() - t0, 1)
    print(f"[{name}] {sum(r['ids'][:, r['prompt']:].numel() for r in rollouts):,} rollout tokens in {gen_seconds} s", flush=True)
    before = greedy_agreement(draft, val_rollouts)

    def batch_fn(step, gen):
        if step % cfg["natural_every"] == cfg["natural_every"] - 1:
            return random_batch(train_ids, 16, gen) + (0.5,)
        r = rollouts[int(torch.randint(0, len(rollouts), (1,), generator=gen))]["ids"]
        rows = torch.randperm(len(r), generator=gen)[:cfg["batch"]]
        x = r[rows].to(DEV)
        return x[:, :-1], x[:, 1:], 1.0

    def eval_fn(model):
        model.eval()
        a = greedy_agreement(model, val_rollouts)
        return -a["agreement"], {"agreement": a["agreement"], "tokens_per_step_gamma4": a["tokens_per_step"]["4"]}

    log = train(draft, name, train_ids, val_ids, steps=cfg["steps"], batch=16, lr=cfg["lr"],
                eval_every=cfg["eval_every"], patience=cfg["patience"], teacher=target, seed=4,
                batch_fn=batch_fn, eval_fn=eval_fn)
    log["on_policy"] = {**cfg, "rollout_seconds": gen_seconds,
                        "validation_before": before, "validation_after": greedy_agreement(draft, val_rollouts)}
    return log


def distill_candidate(name: str, target, tok, train_ids, val_ids, test_ids, out: str, smoke: bool):
    """Stage 3 for one draft size: distilled from the target on train-split windows (0.5 CE + 0.5 KL).
    A draft as wide as the target starts from the target's embedding. Returns the model (reloaded
    the way it ships), its training log and its candidate summary."""
    sizes = {**DRAFTS, **EXTRA_DRAFTS}[name]
    torch.manual_seed(1)
    d = LlamaForCausalLM(llama_config(sizes)).to(DEV)
    if sizes["hidden_size"] == TARGET["hidden_size"]:
        with torch.no_grad():
            d.model.embed_tokens.weight.copy_(target.model.embed_tokens.weight)
    log = train(d, name, train_ids, val_ids, steps=20 if smoke else 4000, batch=16, lr=2e-3,
                eval_every=10 if smoke else 200, patience=10**9 if smoke else 800,
                teacher=target, kd_weight=0.5, dropout=0.0, seed=1)
    save_model(d, tok, os.path.join(out, "candidates", name))
    d = load_oracle(os.path.join(out, "candidates", name))
    summary = {"params": n_params(d), "config": sizes,
               "test_agreement": agreement_teacher_forced(d, target, test_ids),
               "validation": perplexity(d, val_ids, autocast=False)}
    print(name, json.dumps(summary), flush=True)
    return d, log, summary


def golden_prompts(tok: Tokenizer, test_text: str, smoke: bool):
    fixed = [EOT, "In the beginning", "And the LORD said unto Moses,", "The LORD is my shepherd;"]
    lengths = [8, 16, 24, 32, 48, 64, 96, 128, 160, 200, 256, 320, 400, 512, 600, 700, 800, 900, 950]
    if smoke:
        fixed, lengths = fixed[:2], [16, 600]
    chapters = [c.strip("\n") + "\n" for c in test_text.split(EOT) if c.strip()]
    prompts = [{"name": f"fixed-{i}", "text": t} for i, t in enumerate(fixed)]
    for i, n in enumerate(lengths):
        lines = chapters[(i * 7) % len(chapters)].split("\n")
        text = ""
        for line in lines:  # whole lines until at least n tokens; cut the last line at a word if far over
            candidate = text + line + "\n"
            if len(tok.encode(candidate).ids) >= n:
                words = line.split(" ")
                for k in range(1, len(words) + 1):
                    candidate = text + " ".join(words[:k])
                    if len(tok.encode(candidate).ids) >= n:
                        break
                text = candidate
                break
            text = candidate
        prompts.append({"name": f"test-{n}", "text": text})
    for p in prompts:
        p["ids"] = tok.encode(p["text"]).ids
        assert 0 < len(p["ids"]) and len(p["ids"]) + 64 <= CONTEXT, (p["name"], len(p["ids"]))
    return prompts


@torch.no_grad()
def golden_for_model(model, prompts, steps_logits: int, n_continue: int):
    """Per prompt: greedy continuation + margins, and logits at the prompt's last position and at
    each of the first `steps_logits` greedy steps (full [steps+1, V] rows, fp32)."""
    entries, tensors = [], {}
    for i, p in enumerate(prompts):
        cont, margins = greedy(model, p["ids"], n_continue)
        seq = p["ids"] + cont[:steps_logits]
        logits = model(torch.tensor([seq], device=DEV)).logits[0, len(p["ids"]) - 1:].float()  # [steps+1, V]
        key = f"p{i:02d}"
        tensors[key] = logits.cpu().contiguous()
        top = torch.topk(logits, 50, dim=-1)
        entries.append({"name": p["name"], "logits_key": key, "continuation": cont, "margins": margins,
                        "top50": [{"ids": top.indices[s].tolist(), "logits": top.values[s].tolist(),
                                   "logsumexp": float(torch.logsumexp(logits[s], -1))}
                                  for s in range(logits.shape[0])]})
    return entries, tensors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="tiny run that exercises every step")
    ap.add_argument("--draft-only", metavar="DATA",
                    help="keep the tokenizer, target and target oracle of DATA (the repo's data/ dir) and run "
                         "only the draft's on-policy stage (3b), starting from DATA's draft")
    ap.add_argument("--extra-draft", metavar="NAME", choices=list(EXTRA_DRAFTS),
                    help="with --draft-only: train this extra draft from scratch (stages 3 and 3b) instead; "
                         "DATA's draft, its oracle outputs and the other extra drafts stay as they are")
    args = ap.parse_args()
    if args.extra_draft and not args.draft_only:
        ap.error("--extra-draft goes with --draft-only (a full run trains every extra draft)")
    smoke = args.smoke
    out = args.out
    os.makedirs(out, exist_ok=True)
    t_start = time.time()
    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__, "python": platform.python_version(),
                "gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
    print(json.dumps(versions), flush=True)
    data = args.draft_only

    # 1. tokenizer
    if data:
        tok = Tokenizer.from_file(os.path.join(data, "models/target/tokenizer.json"))
    else:
        tok = train_tokenizer(os.path.join(args.corpus, "train.txt"))
    save_tokenizer(tok, os.path.join(out, "tokenizer"))
    with open(os.path.join(args.corpus, "test.txt"), encoding="utf-8") as f:
        test_text = f.read()
    encodings = [{"text": t, "ids": tok.encode(t).ids} for t in TOKENIZER_TEXTS + [test_text[:4000]]]
    train_ids = load_split(tok, os.path.join(args.corpus, "train.txt"))
    val_ids = load_split(tok, os.path.join(args.corpus, "validation.txt"))
    test_ids = load_split(tok, os.path.join(args.corpus, "test.txt"))
    token_counts = {"train": len(train_ids), "validation": len(val_ids), "test": len(test_ids)}
    print("tokens", token_counts, flush=True)
    if smoke:
        val_ids, test_ids = val_ids[:3000], test_ids[:3000]

    if data:  # 2-3 come from DATA
        with open(os.path.join(data, "models/report.json")) as f:
            old_report = json.load(f)
        with open(os.path.join(data, "logs/training_logs.json")) as f:
            logs = json.load(f)
        shutil.copytree(os.path.join(data, "models/target"), os.path.join(out, "models/target"), dirs_exist_ok=True)
        target = load_oracle(os.path.join(out, "models/target"))
        chosen_target, chosen, candidates = old_report["target"]["chosen"], old_report["draft"]["chosen"], old_report["draft_candidates"]
        draft = load_oracle(os.path.join(data, "models/draft"))
    else:
        # 2. target: one candidate per dropout rate, the best on validation is shipped
        logs, best_val = {}, float("inf")
        for p in TARGET_DROPOUTS[:1] if smoke else TARGET_DROPOUTS:
            torch.manual_seed(0)
            model = LlamaForCausalLM(llama_config({**TARGET, "attention_dropout": 0.1})).to(DEV)
            name = f"target-dropout{p}"
            logs[name] = train(model, name, train_ids, val_ids, steps=20 if smoke else 3000, batch=16, lr=1e-3,
                               eval_every=10 if smoke else 50, patience=10**9 if smoke else 600, dropout=p)
            val = min(v["loss"] for v in logs[name]["validation"])
            if val < best_val:
                best_val, chosen_target = val, name
                model.config.attention_dropout = 0.0
                save_model(model, tok, os.path.join(out, "models/target"))
            del model
        logs["chosen_target"] = chosen_target
        target = load_oracle(os.path.join(out, "models/target"))

        # 3. draft candidates, distilled from the shipped target
        candidates = {}
        for name in DRAFTS:
            d, logs[name], candidates[name] = distill_candidate(name, target, tok, train_ids, val_ids, test_ids, out, smoke)
            del d
        chosen = next((n for n in DRAFTS if candidates[n]["test_agreement"]["agreement"] >= AGREEMENT_GOAL), list(DRAFTS)[-1])
        draft = load_oracle(os.path.join(out, "candidates", chosen))

    # 3b. the chosen draft, distilled again on the target's own continuations (with --extra-draft, DATA's
    # draft and its oracle outputs are kept as they are)
    on_policy = f"{chosen}-on-policy"
    keep_draft = bool(data and args.extra_draft)
    if keep_draft:
        shutil.copytree(os.path.join(data, "models/draft"), os.path.join(out, "models/draft"), dirs_exist_ok=True)
        on_policy_seconds = old_report["on_policy"]["seconds"]
    else:
        t_on_policy = time.time()
        draft.train()
        logs[on_policy] = distill_on_policy(draft, target, on_policy, train_ids, val_ids, smoke)
        save_model(draft, tok, os.path.join(out, "models/draft"))
        draft = load_oracle(os.path.join(out, "models/draft"))
        on_policy_seconds = round(time.time() - t_on_policy, 1)

    # 3c. the extra drafts, both stages each (with --draft-only: the one named by --extra-draft)
    extra = {}
    for name in ([args.extra_draft] if args.extra_draft else []) if data else list(EXTRA_DRAFTS):
        t_extra = time.time()
        d, logs[name], candidate = distill_candidate(name, target, tok, train_ids, val_ids, test_ids, out, smoke)
        d.train()
        logs[f"{name}-on-policy"] = distill_on_policy(d, target, f"{name}-on-policy", train_ids, val_ids, smoke)
        save_model(d, tok, os.path.join(out, "models", name))
        extra[name] = {"model": load_oracle(os.path.join(out, "models", name)), "first_stage": candidate,
                       "seconds": round(time.time() - t_extra, 1)}
        del d

    # 4. check the shipped dirs load through AutoTokenizer too, and encode like `tokenizers`
    hf_tok = AutoTokenizer.from_pretrained(os.path.join(out, "models/target"))
    for e in encodings:
        assert hf_tok.encode(e["text"], add_special_tokens=False) == e["ids"], e["text"]

    # 5. golden oracle outputs (with --draft-only, the target's are DATA's, unchanged)
    golden = {"versions": versions, "dtype": "float32 (weights upcast from the shipped bfloat16)",
              "attention": "eager", "logits_steps": 9,
              "logits_layout": "per prompt, [9, vocab] float32: row 0 = logits at the prompt's last position, "
                               "row k = logits after appending the first k greedy tokens", "models": {}}
    if data:
        with open(os.path.join(data, "golden/golden.json")) as f:
            old_golden = json.load(f)
        golden["prompts"] = prompts = old_golden["prompts"]
        golden["models"]["target"] = old_golden["models"]["target"]
        shutil.copy(os.path.join(data, "golden/target.logits.safetensors"), os.path.join(out, "golden-target.logits.safetensors"))
        n_cont = len(golden["models"]["target"]["entries"][0]["continuation"])
    else:
        golden["prompts"] = prompts = golden_prompts(tok, test_text, smoke)
        n_cont = 8 if smoke else 64
    if keep_draft:
        golden["models"]["draft"] = old_golden["models"]["draft"]
        golden["draft_agreement_on_target_greedy"] = old_golden["draft_agreement_on_target_greedy"]
        shutil.copy(os.path.join(data, "golden/draft.logits.safetensors"), os.path.join(out, "golden-draft.logits.safetensors"))
    if data:  # DATA's other extra drafts, unchanged
        for name, g in old_golden["models"].items():
            if name not in ("target", "draft") and name not in extra:
                golden["models"][name] = g
                shutil.copy(os.path.join(data, "golden", g["logits_file"]), os.path.join(out, f"golden-{g['logits_file']}"))
    to_run = ([] if data else [("target", target)]) + ([] if keep_draft else [("draft", draft)])
    for name, model in to_run + [(n, e["model"]) for n, e in extra.items()]:
        entries, tensors = golden_for_model(model, prompts, 8, n_cont)
        save_file(tensors, os.path.join(out, f"golden-{name}.logits.safetensors"),
                  metadata={"model": name, "layout": golden["logits_layout"]})
        golden["models"][name] = {"logits_file": f"{name}.logits.safetensors", "entries": entries,
                                  "validation": perplexity(model, val_ids, autocast=False),
                                  "test": perplexity(model, test_ids, autocast=False)}

    # free-running agreement: on the target's own greedy continuations, how often a draft's greedy
    # pick equals the target's next token (what greedy speculative decoding accepts, token by token),
    # and the tokens a greedy speculative step emits, replayed per gamma
    @torch.no_grad()
    def agreement_on_target_greedy(model) -> dict:
        rows = []
        for p, e in zip(prompts, golden["models"]["target"]["entries"]):
            seq = torch.tensor([p["ids"] + e["continuation"]], device=DEV)
            picks = model(seq).logits[0, len(p["ids"]) - 1:-1].argmax(-1).tolist()
            rows.append([a == b for a, b in zip(picks, e["continuation"])])
        return {"agreement": sum(map(sum, rows)) / sum(map(len, rows)), "positions": sum(map(len, rows)),
                "tokens_per_step": tokens_per_step_by_gamma(rows)}

    if not keep_draft:
        golden["draft_agreement_on_target_greedy"] = agreement_on_target_greedy(draft)
    for name, e in extra.items():
        e["agreement_on_target_greedy"] = agreement_on_target_greedy(e["model"])
    golden["encodings"] = encodings
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(golden, f)

    # 6. samples, for the README (is the target fluent?)
    if data:
        samples = old_report["samples"]
    else:
        samples = []
        for text in ["In the beginning", "And Jesus said unto them,", EOT]:
            ids = tok.encode(text).ids
            cont, _ = greedy(target, ids, 16 if smoke else 80)
            torch.manual_seed(0)
            s = target.generate(torch.tensor([ids], device=DEV), do_sample=True, temperature=0.8, top_k=0, top_p=1.0,
                                max_new_tokens=16 if smoke else 80, eos_token_id=None, pad_token_id=0)
            samples.append({"prompt": text, "greedy": tok.decode(cont), "sampled_t0.8": tok.decode(s[0, len(ids):].tolist())})

    report = {"versions": versions, "seconds": old_report["seconds"] if data else round(time.time() - t_start, 1),
              "tokens": token_counts,
              "target": {"params": n_params(target), "config": TARGET, "chosen": chosen_target,
                         "validation": golden["models"]["target"]["validation"],
                         "test": golden["models"]["target"]["test"]},
              "draft": {"chosen": chosen, "params": n_params(draft), "config": DRAFTS[chosen],
                        "validation": golden["models"]["draft"]["validation"],
                        "test": golden["models"]["draft"]["test"]},
              "agreement_goal": AGREEMENT_GOAL, "draft_candidates": candidates,
              "on_policy": old_report["on_policy"] if keep_draft else
                           {**logs[on_policy]["on_policy"], "best_step": logs[on_policy]["best_step"],
                            "seconds": on_policy_seconds, "run": "--draft-only" if data else "full"},
              "draft_agreement_teacher_forced_test": old_report["draft_agreement_teacher_forced_test"] if keep_draft
              else agreement_teacher_forced(draft, target, test_ids),
              "draft_agreement_on_target_greedy": golden["draft_agreement_on_target_greedy"],
              "extra_drafts": {**(old_report.get("extra_drafts", {}) if data else {}), **{
                  name: {"params": n_params(e["model"]), "config": EXTRA_DRAFTS[name], "first_stage": e["first_stage"],
                         "validation": golden["models"][name]["validation"], "test": golden["models"][name]["test"],
                         "on_policy": {**logs[f"{name}-on-policy"]["on_policy"],
                                       "best_step": logs[f"{name}-on-policy"]["best_step"],
                                       "run": "--draft-only --extra-draft" if data else "full"},
                         "seconds": e["seconds"],
                         "agreement_teacher_forced_test": agreement_teacher_forced(e["model"], target, test_ids),
                         "agreement_on_target_greedy": e["agreement_on_target_greedy"]}
                  for name, e in extra.items()}},
              "samples": samples}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out, "training_logs.json"), "w") as f:
        json.dump(logs, f)
    print(json.dumps({k: v for k, v in report.items() if k not in ("draft_candidates", "samples")}, indent=2), flush=True)


if __name__ == "__main__":
    main()
