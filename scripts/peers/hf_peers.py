"""HF transformers as a GPU peer (issue 11, item 5): decode ms/step and tok/s of our models in PyTorch.

Run from the project root on a CUDA machine (torch, transformers; no network needed):

    python3 scripts/peers/hf_peers.py --out $OUT/hf-peers.json            # full set, ~4-6 min on an H200
    python3 scripts/peers/hf_peers.py --out $OUT/hf-peers.json --quick    # target only, fewer repeats, ~2-3 min
    python3 scripts/peers/hf_peers.py --dry-run --out /tmp/plan.json      # the plan only; needs no torch

Then `npm run bench:peers -- --backend webgpu --hf hf-peers.json` merges the file into
data/bench/webgpu/peers-webgpu.json beside our own figures from the same machine.

What is measured, per (model, mode, dtype, batch):
  - model: `target` (data/models/target, HF format) and `tinyllama-1b` (random weights, TinyLlama-1.1B
    shapes, built here from a config: nothing downloaded)
  - mode: `eager` (generate() with the default dynamic cache) or `compiled`
    (generate(..., cache_implementation="static"): transformers compiles the decode step with
    torch.compile, mode reduce-overhead, i.e. CUDA graphs)
  - dtype: fp32 (TF32 matmuls left off, torch's default) or bf16
  - batch: B rows, each a different 32-token prompt; 128 new tokens; greedy; KV cache; EOS disabled so
    every row decodes exactly 128 tokens

Decode vs prefill. generate() runs one prefill forward (the prompt, which gives token 1), then one
decode forward per further token. So
    decode ms/step = (t(generate, 1 + N new tokens) - t(generate, 1 new token)) / N
where both calls start from the same prompt and batch: the difference holds exactly N decode steps and
nothing else (the prefill, input preparation and the final output assembly cancel). Each t is the
median of --repeats timed calls, after --warmup untimed calls of the same shapes (the first compiled
call compiles: its time is reported as compile seconds, never as a decode figure). The static cache
is kept by the model across calls and reused when large enough, so the 1-token calls (made after the
long ones) reuse the compiled step's cache and recompile nothing. A second figure, the median
inter-token interval seen by a streamer (BaseStreamer.put is called after each step with the new ids
on the CPU, which waits for the GPU), gives the per-step distribution; it adds one small
device-to-host copy per step, which generate() already synchronizes on anyway.

Every configuration is tried on its own: a failure records the error in the JSON and the run goes on.
The JSON is rewritten after every configuration, so an interrupted run keeps what it measured.
"""

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

# ---- plan (pure Python: testable without torch)

TINYLLAMA_1B = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    vocab_size=32000,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
)

MODELS = ("target", "tinyllama-1b")
MODES = ("eager", "compiled")
DTYPES = ("fp32", "bf16")


def csv(kind, allowed=None):
    """argparse type: comma-separated values (ints when kind is int), checked against `allowed`."""

    def parse(s):
        items = [x.strip() for x in s.split(",") if x.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        out = []
        for x in items:
            if kind is int:
                if not x.isdigit() or int(x) < 1:
                    raise argparse.ArgumentTypeError(f"'{x}' is not a positive integer")
                out.append(int(x))
            else:
                if allowed and x not in allowed:
                    raise argparse.ArgumentTypeError(f"'{x}' is not one of {', '.join(allowed)}")
                out.append(x)
        return out

    return parse


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="HF transformers decode speed on our models (eager and torch.compile).")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--quick", action="store_true", help="target only, 2 repeats, 1 warm-up (about half the time)")
    ap.add_argument("--dry-run", action="store_true", help="print and write the plan; import no torch")
    ap.add_argument("--models", type=csv(str, MODELS), default=None, help="target,tinyllama-1b (default both; --quick: target)")
    ap.add_argument("--modes", type=csv(str, MODES), default=list(MODES), help="eager,compiled")
    ap.add_argument("--dtypes", type=csv(str, DTYPES), default=list(DTYPES), help="fp32,bf16")
    ap.add_argument("--batches", type=csv(int), default=[1, 8, 32], help="batch sizes for the target (default 1,8,32)")
    ap.add_argument("--big-batches", type=csv(int), default=[1], help="batch sizes for tinyllama-1b (default 1)")
    ap.add_argument("--model-dir", default=os.path.join("data", "models", "target"), help="the target's HF directory")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128, help="N: the decode steps measured are N (1 + N generated)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per length (default 3; --quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls per shape first (default 2; --quick 1)")
    ap.add_argument("--budget-s", type=float, default=330.0,
                    help="skip configurations that would start after this many seconds (default 330)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.models is None:
        a.models = ["target"] if a.quick else list(MODELS)
    if a.repeats is None:
        a.repeats = 2 if a.quick else 3
    if a.warmup is None:
        a.warmup = 1 if a.quick else 2
    if a.repeats < 1 or a.warmup < 0 or a.prompt_tokens < 1 or a.new_tokens < 1:
        ap.error("--repeats, --prompt-tokens and --new-tokens must be >= 1, --warmup >= 0")
    return a


def plan(args):
    """The configurations to run, most important first (a time budget cuts from the end).

    target: every mode x dtype x batch (eager first: it needs no compilation);
    tinyllama-1b: bf16 before fp32 (the dtype real checkpoints ship in), eager before compiled.
    """
    out = []
    if "target" in args.models:
        for mode in args.modes:
            for dtype in args.dtypes:
                for batch in args.batches:
                    out.append(dict(model="target", mode=mode, dtype=dtype, batch=batch))
    if "tinyllama-1b" in args.models:
        for dtype in [d for d in ("bf16", "fp32") if d in args.dtypes]:
            for mode in args.modes:
                for batch in args.big_batches:
                    out.append(dict(model="tinyllama-1b", mode=mode, dtype=dtype, batch=batch))
    return out


def median(xs):
    return statistics.median(xs) if xs else None


def decode_from_difference(long_ms, short_ms, steps):
    """ms per decode step from generate() wall times with 1 + steps and 1 new tokens."""
    if long_ms is None or short_ms is None or steps < 1:
        return None
    return (long_ms - short_ms) / steps


def tok_per_s(ms_per_step, batch):
    """decode tokens per second of the whole batch: every step makes one token per row."""
    if ms_per_step is None or ms_per_step <= 0:
        return None
    return batch * 1000.0 / ms_per_step


def intervals_ms(stamps):
    """Inter-token intervals from streamer time stamps (seconds): [prompt, token 1, token 2, ...].

    The first interval (prompt -> token 1) is the prefill; the rest are decode steps."""
    if len(stamps) < 3:
        return None, []
    prefill = (stamps[1] - stamps[0]) * 1000.0
    steps = [(b - a) * 1000.0 for a, b in zip(stamps[1:], stamps[2:])]
    return prefill, steps


def row_template(cfg):
    return dict(
        model=cfg["model"], mode=cfg["mode"], dtype=cfg["dtype"], batch=cfg["batch"],
        status="pending", error=None,
        decodeMsPerStep=None, decodeTokPerS=None,
        streamerStepMsMedian=None, streamerStepMsP10=None, streamerStepMsP90=None, streamerTokPerSMedian=None,
        prefillMs=None, generateLongMs=None, generateShortMs=None, samplesLongMs=[], samplesShortMs=[],
        firstCallS=None, compiledGraphs=None, generatedTokens=None, attnImplementation=None, seconds=None,
    )


# ---- machine facts

def machine_facts(torch=None, transformers=None):
    m = dict(
        python=platform.python_version(),
        platform=platform.platform(),
        cpuModel=cpu_model(),
        cpuCores=os.cpu_count(),
    )
    if torch is not None:
        m["torch"] = torch.__version__
        m["cuda"] = torch.version.cuda
        m["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        m["cudaAvailable"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            m["gpu"] = torch.cuda.get_device_name(0)
            m["gpuCount"] = torch.cuda.device_count()
            m["gpuMemoryBytes"] = int(p.total_memory)
            m["gpuCapability"] = f"{p.major}.{p.minor}"
        m["tf32Matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    if transformers is not None:
        m["transformers"] = transformers.__version__
    m["driver"] = nvidia_smi("driver_version")
    return m


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def nvidia_smi(field):
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


# ---- output

def write_json(path, record):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def log(msg):
    print(f"[hf_peers {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def print_table(rows):
    log("results (decode = (t(1+N) - t(1)) / N; streamer = median inter-token interval)")
    print(f"{'model':<14}{'mode':<10}{'dtype':<6}{'batch':>6}{'ms/step':>10}{'tok/s':>11}{'stream ms':>11}"
          f"{'prefill ms':>12}{'1st call s':>11}  status", flush=True)
    for r in rows:
        print(f"{r['model']:<14}{r['mode']:<10}{r['dtype']:<6}{r['batch']:>6}{fmt(r['decodeMsPerStep']):>10}"
              f"{fmt(r['decodeTokPerS'], 0):>11}{fmt(r['streamerStepMsMedian']):>11}{fmt(r['prefillMs']):>12}"
              f"{fmt(r['firstCallS'], 1):>11}  {r['status']}{'' if not r['error'] else ': ' + r['error'].splitlines()[0][:80]}",
              flush=True)


# ---- measurement (torch from here on)

def build_model(name, dtype, args, torch, transformers):
    """The model in `dtype` on the GPU, eval mode, EOS disabled (every row decodes exactly N tokens)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tdtype = torch.float32 if dtype == "fp32" else torch.bfloat16
    if name == "target":
        model = LlamaForCausalLM.from_pretrained(args.model_dir, dtype=tdtype)
        model = model.to("cuda")
    else:
        config = LlamaConfig(**TINYLLAMA_1B)
        torch.manual_seed(args.seed)
        # built on the GPU in fp32 (random init, normal with std initializer_range), then cast
        with torch.device("cuda"):
            model = LlamaForCausalLM(config)
        model = model.to(tdtype)
    model.eval()
    gc_ = model.generation_config
    gc_.eos_token_id = None
    gc_.pad_token_id = 0
    gc_.do_sample = False
    return model


def prompts(vocab, batch, n, seed, torch):
    """B different prompts of n ids in [1, vocab): the content does not change the cost of a step."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (batch, n), generator=g).to("cuda")


class StampStreamer:
    """BaseStreamer-compatible: time of each put() (prompt first, then one per generated step)."""

    def __init__(self):
        self.stamps = []

    def put(self, value):
        self.stamps.append(time.perf_counter())

    def end(self):
        pass


def run_config(cfg, model, args, torch, row):
    ids = prompts(model.config.vocab_size, cfg["batch"], args.prompt_tokens, args.seed + cfg["batch"], torch)
    mask = torch.ones_like(ids)
    n = args.new_tokens
    kwargs = dict(attention_mask=mask, do_sample=False, use_cache=True)
    if cfg["mode"] == "compiled":
        kwargs["cache_implementation"] = "static"

    def call(new_tokens, streamer=None):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=new_tokens, streamer=streamer, **kwargs)
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1000.0, out

    graphs0 = dynamo_graphs(torch)
    # warm-up: the long shape first (it sizes the static cache and compiles the decode step), then
    # the short one; the first call's time is what compilation (and CUDA start-up) cost
    first_ms, out = call(1 + n)
    row["firstCallS"] = first_ms / 1000.0
    row["generatedTokens"] = int(out.shape[1] - ids.shape[1])
    if row["generatedTokens"] != 1 + n:
        raise RuntimeError(f"generate made {row['generatedTokens']} tokens, expected {1 + n}")
    for _ in range(max(0, args.warmup - 1)):
        call(1 + n)
    for _ in range(args.warmup):
        call(1)
    row["compiledGraphs"] = dynamo_graphs(torch) - graphs0 if graphs0 is not None else None

    # timed: long and short calls alternate, so a drift in clocks affects both alike
    long_ms, short_ms = [], []
    for _ in range(args.repeats):
        long_ms.append(call(1 + n)[0])
        short_ms.append(call(1)[0])
    row["samplesLongMs"] = long_ms
    row["samplesShortMs"] = short_ms
    row["generateLongMs"] = median(long_ms)
    row["generateShortMs"] = median(short_ms)
    row["decodeMsPerStep"] = decode_from_difference(row["generateLongMs"], row["generateShortMs"], n)
    row["decodeTokPerS"] = tok_per_s(row["decodeMsPerStep"], cfg["batch"])

    # one streamed call for the per-step distribution and the prefill time
    s = StampStreamer()
    call(1 + n, streamer=s)
    prefill, steps = intervals_ms(s.stamps)
    row["prefillMs"] = prefill
    if steps:
        q = sorted(steps)
        row["streamerStepMsMedian"] = median(steps)
        row["streamerStepMsP10"] = q[max(0, int(0.1 * len(q)) - 1)]
        row["streamerStepMsP90"] = q[min(len(q) - 1, int(0.9 * len(q)))]
        row["streamerTokPerSMedian"] = tok_per_s(row["streamerStepMsMedian"], cfg["batch"])
    row["attnImplementation"] = getattr(model.config, "_attn_implementation", None)
    if cfg["mode"] == "compiled" and row["compiledGraphs"] == 0:
        row["error"] = "no torch.compile graph was made: this decode ran eager (check transformers' auto-compile criteria)"


def dynamo_graphs(torch):
    """Graphs torch.compile has made so far (None when the counter is unavailable)."""
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:
        return None


def main(argv=None):
    args = parse_args(argv)
    configs = plan(args)
    t_start = time.perf_counter()
    record = dict(
        name="hf-peers",
        tool="scripts/peers/hf_peers.py",
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        machine=None,
        settings=dict(
            promptTokens=args.prompt_tokens, newTokens=args.new_tokens, repeats=args.repeats, warmup=args.warmup,
            quick=args.quick, greedy=True, kvCache="dynamic (eager) / static (compiled)", eos="disabled",
            method="decode ms/step = (median t(generate 1+N) - median t(generate 1)) / N; streamer = median inter-token interval",
            compile='generate(..., cache_implementation="static"): transformers auto-compiles the decode step '
                    "(torch.compile, mode reduce-overhead = CUDA graphs)",
            argv=sys.argv[1:] if argv is None else list(argv),
        ),
        models={},
        rows=[dict(row_template(c), status="planned") for c in configs],
        notes=[],
    )
    log(f"{len(configs)} configurations: " + ", ".join(f"{c['model']}/{c['mode']}/{c['dtype']}/b{c['batch']}" for c in configs))
    if args.dry_run:
        record["machine"] = machine_facts()
        record["notes"].append("dry run: nothing measured")
        write_json(args.out, record)
        log(f"wrote {args.out} (dry run)")
        return 0

    import torch
    import transformers

    record["machine"] = machine_facts(torch, transformers)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, CUDA {torch.version.cuda}, "
        f"GPU {record['machine'].get('gpu')}")
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script measures the GPU")
    try:  # one graph per (model, dtype, batch) shape: leave room above dynamo's default limit of 8
        torch._dynamo.config.cache_size_limit = 64
        if hasattr(torch._dynamo.config, "recompile_limit"):
            torch._dynamo.config.recompile_limit = 64
    except Exception as e:  # noqa: BLE001
        record["notes"].append(f"could not raise dynamo's recompile limit: {e}")
    write_json(args.out, record)

    model, loaded = None, None
    for i, cfg in enumerate(configs):
        row = record["rows"][i]
        label = f"{cfg['model']} {cfg['mode']} {cfg['dtype']} batch {cfg['batch']}"
        elapsed = time.perf_counter() - t_start
        if elapsed > args.budget_s:
            row["status"] = "skipped"
            row["error"] = f"time budget: {elapsed:.0f} s > --budget-s {args.budget_s:.0f}"
            log(f"[{i + 1}/{len(configs)}] {label}: skipped ({row['error']})")
            continue
        log(f"[{i + 1}/{len(configs)}] {label} ...")
        t0 = time.perf_counter()
        try:
            key = (cfg["model"], cfg["dtype"])
            if loaded != key:
                model = None
                gc.collect()
                torch.cuda.empty_cache()
                model = build_model(cfg["model"], cfg["dtype"], args, torch, transformers)
                loaded = key
                if cfg["model"] not in record["models"]:
                    c = model.config
                    record["models"][cfg["model"]] = dict(
                        source=os.path.normpath(args.model_dir) if cfg["model"] == "target"
                        else "random weights (torch.manual_seed(seed), transformers' init), TinyLlama-1.1B shapes",
                        params=sum(p.numel() for p in model.parameters()),
                        config=dict(hidden=c.hidden_size, intermediate=c.intermediate_size, layers=c.num_hidden_layers,
                                    heads=c.num_attention_heads, kvHeads=c.num_key_value_heads, vocab=c.vocab_size,
                                    tiedEmbeddings=bool(getattr(c, "tie_word_embeddings", False))),
                    )
            if cfg["mode"] == "compiled":
                torch._dynamo.reset()  # each shape compiles from a clean slate
            run_config(cfg, model, args, torch, row)
            row["status"] = "ok" if row["error"] is None else "suspect"
            log(f"[{i + 1}/{len(configs)}] {label}: {fmt(row['decodeMsPerStep'])} ms/step, "
                f"{fmt(row['decodeTokPerS'], 0)} tok/s (streamer median {fmt(row['streamerStepMsMedian'])} ms), "
                f"first call {fmt(row['firstCallS'], 1)} s")
        except Exception as e:  # noqa: BLE001 -- one configuration's failure must not end the run
            row["status"] = "error"
            row["error"] = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exc().splitlines(True)[-6:])
            log(f"[{i + 1}/{len(configs)}] {label}: FAILED {type(e).__name__}: {str(e)[:200]}")
            if "out of memory" in str(e).lower():
                model, loaded = None, None
                gc.collect()
                torch.cuda.empty_cache()
        row["seconds"] = time.perf_counter() - t0
        record["totalSeconds"] = time.perf_counter() - t_start
        write_json(args.out, record)

    print_table(record["rows"])
    record["totalSeconds"] = time.perf_counter() - t_start
    write_json(args.out, record)
    ok = sum(r["status"] == "ok" for r in record["rows"])
    log(f"wrote {args.out}: {ok}/{len(configs)} configurations ok in {record['totalSeconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
