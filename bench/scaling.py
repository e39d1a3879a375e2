"""1 process vs 2 processes (gloo DDP) on the CPU: throughput of pretrain and SFT at the same global batch.

Each run is its own `accelerate launch` (config cpu.yaml, or cpu_ddp.yaml for 2 processes) of the real
stage on a `mini` base built here; the numbers are the stage's own (pretrain: tokens/s of its training
loop; SFT: the Trainer's train_samples_per_second, global over ranks). Two thread settings:
- "1 thread/proc": 1 process x 1 thread vs 2 processes x 1 thread: one core vs two; 2.0 = perfect scaling.
- "cores split": 1 process x N threads vs 2 processes x N/2 threads, both on all N cores: the ratio is
  what DDP costs (gradient all-reduce, two smaller batches) against intra-op threads; 1.0 = a draw.
The load average (other jobs on the machine) is printed with every row: with more runnable jobs than
cores the multi-threaded runs suffer most (their threads wait for each other), so read those with care.

    python bench/scaling.py                      # pretrain + SFT, both settings, ~5 min on a quiet 2-core machine
    python bench/scaling.py --modes split --pretrain_steps 60 --sft_samples 1024
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def launch(processes: int, threads: int, args: list[str], port: int) -> float:
    """Run one stage under accelerate launch; returns wall seconds (the stage's metrics are in its manifest)."""
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    env["OMP_NUM_THREADS"] = str(threads)
    config = "cpu_ddp.yaml" if processes == 2 else "cpu.yaml"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "accelerate_configs" / config), "--main_process_port", str(port), *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def manifest(path: Path) -> dict:
    return json.loads((path / "ladder.json").read_text())["metrics"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mini")
    p.add_argument("--modes", default="one,split", help="one: 1 thread per process; split: cores / processes")
    p.add_argument("--pretrain_steps", type=int, default=30)
    p.add_argument("--pretrain_batch", type=int, default=16, help="global batch (blocks of seq_len tokens)")
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--sft_samples", type=int, default=384)
    p.add_argument("--sft_batch", type=int, default=16, help="global batch (chats)")
    args = p.parse_args()

    from transformers import AutoTokenizer

    from ladder.data import build
    from ladder.pretrain import tokenizer as tok_stage
    from ladder.pretrain.model import build_model, n_params

    work = Path(tempfile.mkdtemp(prefix="ladder-scaling-"))
    build.main(["--output_dir", str(work / "data"), "--corpus_docs", "3000", "--sft_train", "2000"])
    tok_stage.main(["--data", str(work / "data"), "--output_dir", str(work / "tok")])
    tok = AutoTokenizer.from_pretrained(work / "tok")
    model = build_model(args.model, tok, seed=0)
    model.save_pretrained(work / "base")
    tok.save_pretrained(work / "base")

    cores = os.cpu_count() or 1
    modes = {"one": "1 thread/proc", "split": "cores split"}
    threads = {"one": lambda n: 1, "split": lambda n: max(1, cores // n)}
    rows = []

    def run(stage, mode, n, args_, port, read):
        load = os.getloadavg()[0]
        wall = launch(n, threads[mode](n), args_, port)
        value, unit = read()
        rows.append((stage, modes[mode], n, threads[mode](n), value, unit, wall, load, os.getloadavg()[0]))

    for mode in args.modes.split(","):
        for n in (1, 2):
            out = work / f"pretrain-{mode}-{n}"
            run("pretrain", mode, n, [
                "-m", "ladder.pretrain", "--data", str(work / "data"), "--tokenizer", str(work / "tok"),
                "--output_dir", str(out), "--model", args.model, "--max_steps", str(args.pretrain_steps),
                "--batch_size", str(args.pretrain_batch // n), "--seq_len", str(args.seq_len), "--warmup_steps", "5",
                "--eval_every", str(10**9), "--save_every", str(10**9), "--eval_batches", "0",
                "--logging_steps", str(10**9), "--report_to", "none"], 29591,
                lambda: (checked(out, n)["tokens_per_s"], "tokens/s"))
    for mode in args.modes.split(","):
        for n in (1, 2):
            out = work / f"sft-{mode}-{n}"
            run("SFT", mode, n, [
                "-m", "ladder.sft", "--model", str(work / "base"), "--data", str(work / "data"),
                "--output_dir", str(out), "--max_train_samples", str(args.sft_samples), "--num_train_epochs", "1",
                "--per_device_train_batch_size", str(args.sft_batch // n), "--eval_samples", "0",
                "--test_split", "null", "--report_to", "none", "--save_strategy", "no",
                "--logging_steps", str(10**9)], 29592,
                lambda: (checked(out, n)["samples_per_second"], "samples/s"))

    print(f"\nmodel {args.model} ({n_params(model) / 1e6:.2f}M params), {cores} cores; pretrain {args.pretrain_steps} "
          f"steps x {args.pretrain_batch} x {args.seq_len} tokens, SFT {args.sft_samples} chats x 1 epoch "
          f"(global batch {args.sft_batch}); the same global batch on 1 and 2 processes\n")
    print("| stage | threads | processes x threads | throughput | 2-proc / 1-proc | wall (s) | load avg before -> after |")
    print("|---|---|---|---|---|---|---|")
    one = {}
    for stage, mode, n, t, value, unit, wall, before, after in rows:
        one.setdefault((stage, mode), value)
        print(f"| {stage} | {mode} | {n} x {t} | {value:,.1f} {unit} | {value / one[stage, mode]:.2f} | "
              f"{wall:.0f} | {before:.1f} -> {after:.1f} |")
    shutil.rmtree(work, ignore_errors=True)


def checked(out: Path, n: int) -> dict:
    m = manifest(out)
    assert m["world_size"] == n, f"{out}: world_size {m['world_size']}, launched {n}"
    return m


if __name__ == "__main__":
    main()
