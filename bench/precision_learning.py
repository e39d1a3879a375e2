"""Does bf16 cost learning? The same SFT and GRPO of the tiny ladder in fp32 and in bf16, side by side.

Each precision runs, in its own process and with LADDER_PRECISION set (ladder.precision), the tiny
recipes' SFT from the ladder's base and then GRPO from that SFT, for the same steps and seed. Printed:
the matrix-multiply peak of each precision on this machine (bench/mfu.py), and per precision the SFT's
train loss and held-out accuracy, GRPO's held-out greedy accuracy (± SE) every --heldout_every steps,
thinking length, and seconds per GRPO step. On a CPU without bf16 instructions bf16 is emulated: its
times say nothing about a Xeon, its accuracies do (the rounding is the same; only the speed differs).

    python bench/precision_learning.py                   # runs/tiny, GRPO 20 steps
    python bench/precision_learning.py --grpo_only --precisions bf16   # GRPO from runs/tiny/sft
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def ladder(env: dict, *args) -> float:
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "ladder.cli", *map(str, args)], check=True, cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/tiny", help="a tiny ladder run with base/ and data/")
    p.add_argument("--grpo_steps", type=int, default=20)
    p.add_argument("--heldout_every", type=int, default=10)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--out", default="/tmp/ladder-precision")
    p.add_argument("--grpo_only", action="store_true",
                   help="GRPO only, every precision from the run's own SFT (emulated bf16 SFT takes ~20 min)")
    args = p.parse_args()
    run, out = ROOT / args.run, Path(args.out)

    import mfu

    peaks = mfu.measure_peaks("cpu", dtypes=("fp32", "bf16"), sizes=(192, 512, 1024))
    print(f"\n{mfu.cpu_name()}: matmul peak "
          + ", ".join(f"{d} {mfu.fmt_flops(v['flops'])} ({v['note']})" for d, v in peaks.items()))

    rows = []
    for prec in args.precisions:
        env = {**os.environ, "LADDER_PRECISION": prec}
        sft, grpo = out / prec / "sft", out / prec / "grpo"
        if args.grpo_only:
            sft = run / "sft"
        t_sft = 0.0 if args.grpo_only else ladder(env, "sft", "--config", "recipes/tiny/sft.yaml", "--model", run / "base", "--data", run / "data",
                       "--output_dir", sft, "--report_to", "none", "--save_strategy", "no")
        t_grpo = ladder(env, "grpo", "--config", "recipes/tiny/grpo.yaml", "--model", sft, "--data", run / "data",
                        "--output_dir", grpo, "--max_steps", args.grpo_steps, "--heldout_every", args.heldout_every,
                        "--report_to", "none", "--save_strategy", "no")
        s, g = (json.loads((d / "ladder.json").read_text()) for d in (sft, grpo))
        rows.append((prec, s, g, t_sft, t_grpo))
        print(f"{prec}: sft {t_sft:.0f} s, grpo {t_grpo:.0f} s", flush=True)

    print("\n| precision (as run) | SFT train loss | SFT held-out (± SE) | GRPO held-out per step | GRPO final (± SE) "
          "| thinking (chars) | s / GRPO step | SFT wall | GRPO wall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for prec, s, g, t_sft, t_grpo in rows:
        sm, gm = s["metrics"], g["metrics"]
        curve = [f"{h['step']}: {h['heldout_accuracy']:.1%}" for h in g.get("history", []) if "heldout_accuracy" in h]
        print(f"| {g.get('precision', {}).get('train', prec)} | {sm['train_loss']:.4f} "
              f"| {sm['accuracy']:.1%} ± {100 * sm['accuracy_se']:.1f} | {gm['before/accuracy']:.1%} -> {', '.join(curve)} "
              f"| {gm['after/accuracy']:.1%} ± {100 * gm['after/accuracy_se']:.1f} | {gm['after/think_length']:.0f} "
              f"| {gm.get('seconds_per_step', float('nan')):.2f} | {t_sft:.0f} s | {t_grpo:.0f} s |")

if __name__ == "__main__":
    main()
