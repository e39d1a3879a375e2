"""Does GRPO learn within a fixed CPU budget? Held-out accuracy before and after, per rollout backend.

From an SFT checkpoint (default: the tiny ladder's runs/tiny/sft, built here from the tiny recipes
when missing), each backend runs `ladder grpo --config recipes/tiny/grpo.yaml` for the same number
of steps in its own process. Printed: steps, CPU minutes (user + system of that process and its
children) and wall minutes, greedy held-out accuracy and format rate before -> after, and the
sampled training reward of the first -> last logged steps, and the curve: held-out accuracy every
--heldout_every steps. The baseline is the model before GRPO, measured in the same run by the stage
itself. CPU minutes are the honest budget on a shared machine (wall time there mostly measures the
other jobs); the load average during the runs is printed with them.

    python bench/grpo_learning.py                         # the recipe's steps, hf and vllm
    python bench/grpo_learning.py --steps 100 --backends hf
    python bench/grpo_learning.py --backends hf -- --learning_rate 3e-4 --temperature 1.0   # any stage option
    python bench/grpo_learning.py --quick --steps 4        # smoke: tiny model built in ~1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ladder(*args) -> None:
    subprocess.run([sys.executable, "-m", "ladder.cli", *map(str, args)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def build_sft(work: Path, quick: bool) -> tuple[Path, Path]:
    """data -> tokenizer -> base -> SFT with the tiny recipes (quick: the test fixtures' small sizes)."""
    r = ROOT / "recipes" / "tiny"
    data, tok, base, sft = work / "data", work / "tokenizer", work / "base", work / "sft"
    small = ["--corpus_docs", "3000", "--sft_train", "800", "--rl_train", "300", "--test_size", "64"] if quick else []
    ladder("data", "--config", r / "data.yaml", "--output_dir", data, *small)
    ladder("tokenizer", "--config", r / "tokenizer.yaml", "--data", data, "--output_dir", tok,
           *(["--vocab_size", "400"] if quick else []))
    ladder("pretrain", "--config", r / "pretrain.yaml", "--data", data, "--tokenizer", tok, "--output_dir", base,
           "--report_to", "none", *(["--model", "tiny", "--max_steps", "150", "--batch_size", "16"] if quick else []))
    ladder("sft", "--config", r / "sft.yaml", "--model", base, "--data", data, "--output_dir", sft,
           "--report_to", "none", *(["--num_train_epochs", "3", "--learning_rate", "2e-3"] if quick else []))
    return sft, data


def run_grpo(backend: str, sft: Path, data: Path, out: Path, args) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "ladder.cli", "grpo", "--config", ROOT / "recipes" / "tiny" / "grpo.yaml",
           "--model", sft, "--data", data, "--output_dir", out, "--rollout_backend", backend,
           "--eval_samples", args.eval_samples, "--save_strategy", "no", "--report_to", "none",
           "--seed", args.seed, "--heldout_every", args.heldout_every,
           *(["--max_steps", args.steps] if args.steps else []), *args.extra]
    if args.quick:
        cmd += ["--per_device_train_batch_size", "32", "--max_completion_length", "32"]
    proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "VLLM_LOGGING_LEVEL": "WARNING"})
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        print(f"{backend}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}", file=sys.stderr)
        return {"error": proc.returncode}
    manifest = json.loads((out / "ladder.json").read_text())
    metrics = manifest["metrics"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    curve = [(0, metrics.get("before/accuracy"))]
    curve += [(h["step"], h["heldout_accuracy"]) for h in manifest["history"] if "heldout_accuracy" in h]
    curve.append((metrics["steps"], metrics.get("after/accuracy")))
    return {**metrics, "cpu_min": cpu / 60, "wall_min": wall / 60, "curve": curve}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sft", default=None, help="SFT checkpoint (default runs/tiny/sft, built if missing)")
    p.add_argument("--data", default=None, help="its data dir (default runs/tiny/data)")
    p.add_argument("--steps", type=int, default=None, help="default: the recipe's max_steps")
    p.add_argument("--heldout_every", type=int, default=10, help="held-out accuracy every N steps (the curve)")
    p.add_argument("--backends", default="hf,vllm")
    p.add_argument("--eval_samples", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: a tiny model built in a temp dir")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.extra = extra  # passed to `ladder grpo` as they are

    work = Path(tempfile.mkdtemp(prefix="ladder-grpo-learning-"))
    if args.sft:
        sft, data = Path(args.sft), Path(args.data or ROOT / "runs" / "tiny" / "data")
    elif not args.quick and (ROOT / "runs" / "tiny" / "sft" / "ladder.json").exists():
        sft, data = ROOT / "runs" / "tiny" / "sft", ROOT / "runs" / "tiny" / "data"
    else:
        print(f"building an SFT model under {work} ...", flush=True)
        sft, data = build_sft(work, args.quick)

    loads = [os.getloadavg()[0]]
    results = {}
    for b in args.backends.split(","):
        results[b] = run_grpo(b, sft, data, work / f"grpo-{b}", args)
        loads.append(os.getloadavg()[0])
    threads = os.environ.get("OMP_NUM_THREADS", str(os.cpu_count()))
    print(f"\nGRPO from {sft} (recipes/tiny/grpo.yaml{' ' + ' '.join(args.extra) if args.extra else ''}), "
          f"seed {args.seed}, {args.eval_samples} held-out problems (greedy), OMP_NUM_THREADS={threads}, "
          f"load average {min(loads):.1f}-{max(loads):.1f}\n")
    print("| backend | steps | CPU min | wall min | held-out accuracy | format rate | train reward |")
    print("|---|---|---|---|---|---|---|")
    for b, m in results.items():
        if "error" in m:
            print(f"| {b} | failed | | | | | |")
            continue
        acc = f"{m.get('before/accuracy', float('nan')):.1%} -> {m.get('after/accuracy', float('nan')):.1%}"
        fmt = f"{m.get('before/format_rate', float('nan')):.1%} -> {m.get('after/format_rate', float('nan')):.1%}"
        reward = f"{m['reward_first']:.3f} -> {m['reward_last']:.3f}" if m.get("reward_first") is not None else "-"
        print(f"| {b} | {m['steps']} | {m['cpu_min']:.1f} | {m['wall_min']:.1f} | {acc} | {fmt} | {reward} |")
    for b, m in results.items():
        if "curve" in m:
            points = ", ".join(f"{step}: {acc:.1%}" for step, acc in m["curve"] if acc is not None)
            print(f"\ncurve ({b}), step: held-out accuracy: {points}")


if __name__ == "__main__":
    main()
