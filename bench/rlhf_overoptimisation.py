"""Where does RLHF start fooling its reward model? PPO against the tiny ladder's reward model, long.

The tiny ladder's preference pairs were labelled by a hidden "human" (ladder.data.human) that no
trainer sees. This runs `ladder ppo` from the ladder's SFT checkpoint against its reward model for
many more steps than the ladder does, scoring greedy held-out answers every --every steps with the
reward model and with the hidden human's rule, and prints both per step. The over-optimisation point
is where the reward model's score still rises while the human's falls (the policy has found what the
reward model likes and the human does not).

    python bench/rlhf_overoptimisation.py                      # runs/tiny, 200 steps, RM reward only
    python bench/rlhf_overoptimisation.py --steps 300 --every 25 -- --learning_rate 5e-5 --kl_coef 0.01 --eval_samples 200
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
    p.add_argument("--reuse", action="store_true", help="print the table of a finished --out again, run nothing")
    p.add_argument("extra", nargs="*", help="more `ladder ppo` options, after --")
    args = p.parse_args()
    run = Path(args.run)
    cmd = [sys.executable, "-m", "ladder.cli", "ppo", "--config", "recipes/tiny/ppo.yaml",
           "--model", str(run / "sft"), "--reward_model", str(run / "rm"), "--data", str(run / "data"),
           "--output_dir", args.out, "--max_steps", str(args.steps), "--heldout_every", str(args.every),
           "--rewards", "[]", "--eval_generations", "0", "--save_steps", "0", "--report_to", "none", *args.extra]
    t0 = time.time()
    if not args.reuse:
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    manifest = json.loads((Path(args.out) / "ladder.json").read_text())
    m, history = manifest["metrics"], manifest.get("history", [])
    rows = [(0, m.get("before/rm_score"), m.get("before/judge/human_style"), m.get("before/accuracy"), None)]
    rows += [(h["step"], h.get("heldout_rm_score"), h.get("heldout_judge/human_style"), h.get("heldout_accuracy"),
              h.get("kl")) for h in history if "heldout_rm_score" in h]
    rows.append((m["steps"], m.get("after/rm_score"), m.get("after/judge/human_style"), m.get("after/accuracy"),
                 history[-1]["kl"] if history else None))
    n = manifest["config"].get("eval_samples") or 100
    took = "" if args.reuse else f" in {(time.time() - t0) / 60:.1f} min"
    print(f"\nPPO against the reward model only, {m['steps']} steps{took} (greedy, {n} held-out prompts)\n")
    from ladder.data.human import RIGHT_WEIGHT

    # the mean of human.judgement over the answers: it is linear in the tone and the rightness
    whole = lambda r: None if r[2] is None or r[3] is None else r[2] + RIGHT_WEIGHT * r[3]  # noqa: E731
    print(f"| step | RM score | hidden human (tone) | accuracy (± SE) | human's whole judgement "
          f"(tone + {RIGHT_WEIGHT:g} x right) | KL |")
    print("|---|---|---|---|---|---|")
    fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
    se = lambda p: (p * (1 - p) / n) ** 0.5  # noqa: E731  (of an accuracy over the n prompts)
    for r in rows:
        step, rm, human, acc, kl = r
        acc_s = "" if acc is None else f"{acc:.1%} ± {100 * se(acc):.1f}"
        print(f"| {step} | {fmt(rm, '+.3f')} | {fmt(human, '+.3f')} | {acc_s} | {fmt(whole(r), '.2f')} | {fmt(kl, '.2f')} |")
    # The over-optimisation point: the human's whole judgement at its best, then the RM's score going on up
    # while the judgement falls (by more than two standard errors of its accuracy part: noise is no fall).
    judged = [r for r in rows if whole(r) is not None and r[1] is not None]
    if judged:
        best = max(judged, key=whole)
        se2 = 2 * RIGHT_WEIGHT * se(best[3])
        fooled = [r for r in judged if r[0] > best[0] and r[1] > best[1] and whole(r) < whole(best) - se2]
        print(f"\nhuman's whole judgement at its best at step {best[0]} ({whole(best):.2f}, RM {best[1]:+.3f}); "
              + (f"later the RM score rose to {max(r[1] for r in fooled):+.3f} while the judgement fell to "
                 f"{min(whole(r) for r in fooled):.2f} (beyond 2 SE = {se2:.2f}): over-optimisation from step "
                 f"{min(r[0] for r in fooled)}" if fooled else
                 "no later point where the RM rose while the judgement fell beyond the noise"))

if __name__ == "__main__":
    main()
