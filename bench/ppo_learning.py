"""What PPO buys on a fixed budget: held-out reward-model score and arithmetic accuracy before/after,
next to GRPO given the same number of sampled completions.

Variants, each trained in its own process from the same SFT checkpoint:
  - PPO against the reward model (RLHF; the critic starts from the reward model),
  - PPO on verifiable rewards (math_accuracy + format_reward; the critic starts from the policy),
  - GRPO on the same verifiable rewards (ladder.grpo, TRL), when present.
Budget: `--steps` updates of `--completions` sampled completions each (PPO: that many prompts, one
sample each; GRPO: completions / num_generations prompts, num_generations samples each).
Every checkpoint, the SFT baseline included, is scored here the same way on the same held-out
arithmetic problems: greedy accuracy, greedy RM score, and RM score of samples at temperature 1.

    python bench/ppo_learning.py                     # builds a tiny run first (~1 min)
    python bench/ppo_learning.py --run runs/tiny     # an existing run with data/, sft/, rm/
    python bench/ppo_learning.py --run runs/tiny --steps 40 --ppo_lr 2e-5 --grpo_lr 5e-5   # the recipes' rates
                                                     # (the defaults suit the small built run, not `mini`)
    python bench/ppo_learning.py --steps 3 --eval 16 # smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_tiny_run(root: Path) -> Path:
    """The test suite's tiny run (tests/conftest.py settings): data, tokenizer, base, SFT, RM."""
    from ladder import rm, sft
    from ladder.data import build
    from ladder.pretrain import tokenizer, train

    build.main(["--output_dir", str(root / "data"), "--corpus_docs", "3000", "--sft_train", "800",
                "--prefs_train", "600", "--rl_train", "300", "--test_size", "64", "--countdown_fraction", "0.1"])
    tokenizer.main(["--data", str(root / "data"), "--output_dir", str(root / "tokenizer"), "--vocab_size", "400"])
    train.main(["--data", str(root / "data"), "--tokenizer", str(root / "tokenizer"), "--output_dir",
                str(root / "base"), "--model", "tiny", "--max_steps", "150", "--batch_size", "16",
                "--warmup_steps", "15", "--eval_every", "150", "--save_every", "1000", "--report_to", "none"])
    sft.main(["--model", str(root / "base"), "--data", str(root / "data"), "--output_dir", str(root / "sft"),
              "--num_train_epochs", "3", "--learning_rate", "2e-3", "--eval_samples", "0", "--report_to", "none",
              "--save_strategy", "no"])
    rm.main(["--model", str(root / "sft"), "--data", str(root / "data"), "--output_dir", str(root / "rm"),
             "--num_train_epochs", "2", "--learning_rate", "2e-3", "--report_to", "none", "--save_strategy", "no"])
    return root


def train_variant(module: str, args: list[str]) -> float:
    """Run one stage in its own process; returns its wall time in seconds."""
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if res.returncode:
        raise SystemExit(f"{module} failed:\n{res.stderr[-3000:]}")
    return time.time() - t0


def score_checkpoint(path: Path, rows: list[dict], rm: Path, max_new_tokens: int, seed: int, samples: int) -> dict:
    """Greedy accuracy and RM score; and over `samples` answers per prompt at temperature 1 (one
    sample per prompt leaves the RM score's mean noisier than the gains to see): accuracy, RM score."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ladder.evaluation import evaluate_model, evaluate_sampled

    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    greedy = evaluate_model(model, tok, rows, max_new_tokens=max_new_tokens, reward_model=str(rm))
    sampled = evaluate_sampled(model, tok, rows, samples=samples, temperature=1.0, max_new_tokens=max_new_tokens,
                               seed=seed, reward_model=str(rm))
    return {"accuracy": greedy["accuracy"], "rm_greedy": greedy["rm_score"],
            "accuracy_sampled": sampled["accuracy_sampled"], "rm_sampled": sampled["rm_score_sampled"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", help="a run dir with data/, sft/ and rm/ (default: build a tiny one)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--completions", type=int, default=32, help="sampled completions per step")
    p.add_argument("--num_generations", type=int, default=8, help="GRPO group size")
    p.add_argument("--length", type=int, default=48, help="max new tokens, training and evaluation")
    p.add_argument("--ppo_lr", type=float, default=3e-4)
    p.add_argument("--grpo_lr", type=float, default=1e-4)
    p.add_argument("--eval", type=int, default=200, help="held-out arithmetic problems")
    p.add_argument("--samples", type=int, default=4, help="sampled answers per held-out problem")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

    from ladder.evaluation import load_rows

    work = Path(tempfile.mkdtemp(prefix="ladder-ppo-bench-"))
    run = Path(args.run) if args.run else build_tiny_run(work / "run")
    data, sft, rm = run / "data", run / "sft", run / "rm"
    rows = [r for r in load_rows(str(data), "test", limit=None) if r.get("task", "arithmetic") == "arithmetic"]
    rows = rows[:args.eval]

    verifiable = '["math_accuracy", "format_reward"]'
    common = ["--model", str(sft), "--data", str(data), "--max_steps", str(args.steps), "--eval_samples", "0",
              "--report_to", "none", "--seed", str(args.seed), "--logging_steps", str(max(1, args.steps // 4))]
    ppo = [*common, "--per_device_train_batch_size", str(args.completions), "--response_length", str(args.length),
           "--learning_rate", str(args.ppo_lr), "--save_steps", "0"]
    variants = [
        ("PPO, reward model", "ladder.ppo", [*ppo, "--reward_model", str(rm), "--critic_init", "reward_model"]),
        ("PPO, math + format", "ladder.ppo", [*ppo, "--reward_model", "null", "--critic_init", "policy",
                                              "--rewards", verifiable]),
    ]
    import importlib.util

    if importlib.util.find_spec("ladder.grpo"):
        variants.append(("GRPO, math + format", "ladder.grpo", [
            *common, "--per_device_train_batch_size", str(args.completions), "--num_generations",
            str(args.num_generations), "--max_completion_length", str(args.length), "--learning_rate",
            str(args.grpo_lr), "--rewards", verifiable, "--save_strategy", "no", "--temperature", "1.0"]))

    results = [("SFT (baseline)", 0.0, score_checkpoint(sft, rows, rm, args.length, args.seed, args.samples))]
    for name, module, cli in variants:
        out = work / name.split(",")[0].lower() / str(len(results))
        seconds = train_variant(module, [*cli, "--output_dir", str(out)])
        results.append((name, seconds, score_checkpoint(out, rows, rm, args.length, args.seed, args.samples)))

    base = results[0][2]
    ppo_time = results[2][1] if len(results) > 2 else None
    print(f"\nrun {run}: {args.steps} steps x {args.completions} completions, {len(rows)} held-out arithmetic "
          f"problems, {os.environ['OMP_NUM_THREADS']} thread(s)\n")
    print(f"sampled: {args.samples} answers per problem at temperature 1\n")
    print("| variant | train s | time vs PPO (math) | accuracy greedy | Δ vs SFT | accuracy sampled | Δ vs SFT "
          "| RM score greedy | RM score sampled | Δ vs SFT |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, seconds, r in results:
        ratio = f"{seconds / ppo_time:.2f}" if ppo_time and seconds else "-"
        print(f"| {name} | {seconds:.0f} | {ratio} | {r['accuracy']:.1%} | {r['accuracy'] - base['accuracy']:+.1%} "
              f"| {r['accuracy_sampled']:.1%} | {r['accuracy_sampled'] - base['accuracy_sampled']:+.1%} "
              f"| {r['rm_greedy']:.3f} | {r['rm_sampled']:.3f} | {r['rm_sampled'] - base['rm_sampled']:+.3f} |")


if __name__ == "__main__":
    main()
