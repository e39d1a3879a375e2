"""Calibrate the embedded default: how well does a pretrained base do worked arithmetic?

Pretrains a preset for a fixed budget of steps on the built-in corpus, then samples the base
model few-shot on the held-out problems and prints held-out loss, exact-answer accuracy by
operator/level, the fraction of well-formed worked solutions, and a sample.

    python bench/calibrate_default.py --model mini --steps 600 --out /tmp/cal
"""

from __future__ import annotations

import argparse
import re
import time
from collections import defaultdict
from pathlib import Path

FEW_SHOT = ("Q: What is 23 + 14?\nA: 23 + 14 = 23 + 10 + 4 = 33 + 4 = 37. The answer is 37.\n\n"
            "Q: What is 6 * 7?\nA: 6 * 7 = 42. The answer is 42.\n\n")


def few_shot_accuracy(model_dir, data_dir, n=200, batch=32, max_new_tokens=48):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ladder.data.loaders import load_split

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    rows = [r for r in load_split(data_dir, "rl", "test") if r["task"] == "arithmetic"][:n]
    stats, sample = defaultdict(lambda: [0, 0]), None
    well_formed = 0
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        prompts = [FEW_SHOT + f"Q: {r['prompt'][0]['content']}\nA:" for r in chunk]
        enc = tok(prompts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        for r, seq in zip(chunk, out):
            text = tok.decode(seq[enc["input_ids"].shape[1]:], skip_special_tokens=True).split("\n\n")[0]
            m = re.search(r"The answer is (-?\d+)", text)
            op = r["prompt"][0]["content"].split()[3]
            ok = bool(m) and m.group(1) == r["answer"]
            well_formed += bool(m)
            stats[op][0] += ok
            stats[op][1] += 1
            sample = sample or f"Q: {r['prompt'][0]['content']}\nA:{text}"
    total = sum(s[0] for s in stats.values()) / max(1, sum(s[1] for s in stats.values()))
    return total, well_formed / len(rows), {k: v[0] / v[1] for k, v in stats.items()}, sample


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mini")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--out", default="/tmp/ladder-calibrate")
    p.add_argument("--levels", default="1,2")
    args = p.parse_args()
    from ladder.data import build
    from ladder.pretrain import tokenizer, train

    out = Path(args.out)
    if not (out / "data" / "ladder.json").exists():
        build.main(["--output_dir", str(out / "data"), "--levels", f"[{args.levels}]"])
    if not (out / "tokenizer" / "ladder.json").exists():
        tokenizer.main(["--data", str(out / "data"), "--output_dir", str(out / "tokenizer")])
    base = out / f"base-{args.model}-{args.steps}"
    t0 = time.time()
    metrics = train.train(train.PretrainConfig(
        data=str(out / "data"), tokenizer=str(out / "tokenizer"), output_dir=str(base), model=args.model,
        max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
        eval_every=max(50, args.steps // 4), save_every=10**9, report_to="none"))
    minutes = (time.time() - t0) / 60
    acc, formed, by_op, sample = few_shot_accuracy(base, out / "data")
    print("\n| model | steps | minutes | tokens | held-out loss | few-shot acc | well-formed | + | - | * |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.model} | {args.steps} | {minutes:.1f} | {metrics.tokens:,} | {metrics.eval_loss:.3f} | "
          f"{acc:.0%} | {formed:.0%} | {by_op.get('+', 0):.0%} | {by_op.get('-', 0):.0%} | {by_op.get('*', 0):.0%} |")
    print("\nsample:\n" + sample)


if __name__ == "__main__":
    main()
