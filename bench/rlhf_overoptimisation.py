"""Where does RLHF start fooling its reward model? PPO against the tiny ladder's reward model, long.

The tiny ladder's preference pairs were labelled by a hidden "human" (ladder.data.human) that no
trainer sees. This runs `ladder ppo` from the ladder's SFT checkpoint against its reward model for
many more steps than the ladder does, scoring greedy held-out answers every --every steps with the
reward model and with the hidden human's rule, and prints both per step. The over-optimisation point
is where the reward model's score still rises while the human's falls (the policy has found what the
reward model likes and the human does not).

    python bench/rlhf_overoptimisation.py                      # runs/tiny, 200 steps, RM reward only
    python bench/rlhf_overoptimisation.py --steps 300 --every 20 -- --learning_rate 5e-5 --kl_coef 0.01
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/tiny", help="a finished tiny ladder run (sft, rm, data)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--out", default="/tmp/ladder-rlhf-overopt")
    p.add_argument("extra", nargs="*", help="more `ladder ppo` options, after --")
    args = p.parse_args()
    run = Path(args.run)
    cmd = [sys.executable, "-m", "ladder.cli", "ppo", "--config", "recipes/tiny/ppo.yaml",
           "--model", str(run / "sft"), "--reward_model", str(run / "rm"), "--data", str(run / "data"),
           "--output_dir", args.out, "--max_steps", str(args.steps), "--heldout_every", str(args.every),
           "--rewards", "[]", "--eval_generations", "0", "--save_steps", "0", "--report_to", "none", *args.extra]
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    manifest = json.loads((Path(args.out) / "ladder.json").read_text())
    m, history = manifest["metrics"], manifest.get("history", [])
    rows = [(0, m.get("before/rm_score"), m.get("before/judge/human_style"), m.get("before/accuracy"), None)]
    rows += [(h["step"], h.get("heldout_rm_score"), h.get("heldout_judge/human_style"), h.get("heldout_accuracy"),
              h.get("kl")) for h in history if "heldout_rm_score" in h]
    rows.append((m["steps"], m.get("after/rm_score"), m.get("after/judge/human_style"), m.get("after/accuracy"),
                 history[-1]["kl"] if history else None))
    print(f"\nPPO against the reward model only, {args.steps} steps in {(time.time() - t0) / 60:.1f} min "
          f"(greedy, {m.get('eval_samples', 'held-out')} held-out prompts)\n")
    print("| step | RM score | hidden human | accuracy | KL |")
    print("|---|---|---|---|---|")
    fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
    for step, rm, human, acc, kl in rows:
        print(f"| {step} | {fmt(rm, '+.3f')} | {fmt(human, '+.3f')} | {fmt(acc, '.1%')} | {fmt(kl, '.2f')} |")
    best = max((r for r in rows if r[2] is not None), key=lambda r: r[2], default=None)
    if best:
        later = [r for r in rows if r[0] > best[0] and r[1] is not None and r[2] is not None]
        fooled = [r for r in later if r[1] > best[1] and r[2] < best[2]]
        print(f"\nhidden human's best at step {best[0]} ({best[2]:+.3f}); "
              + (f"after it the RM score rose to {max(r[1] for r in fooled):+.3f} while the human's fell to "
                 f"{min(r[2] for r in fooled):+.3f}: over-optimisation" if fooled else
                 "no later point where the RM rose while the human fell"))


if __name__ == "__main__":
    main()
