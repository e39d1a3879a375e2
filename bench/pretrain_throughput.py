"""Tokens/s of `ladder pretrain` against a bare PyTorch loop on the same model and batches.

Both train the same preset from the same init on the same packed blocks for the same number of
steps, in this one process, one after the other. The ratio says what ladder's loop costs
(accelerate, scheduler, grad clipping, logging); the goal is >= 0.95.

    python bench/pretrain_throughput.py --model mini --steps 60
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def bare_loop(model, blocks, batch_size: int, steps: int, lr: float) -> float:
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        batch = blocks[(step * batch_size) % (len(blocks) - batch_size):][:batch_size]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # same recipe as ladder's loop
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * batch_size * blocks.shape[1] / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mini")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--seq_len", type=int, default=128)
    args = p.parse_args()

    from ladder.runtime import setup_threads

    threads = setup_threads()
    from transformers import AutoTokenizer

    from ladder.data import build
    from ladder.data.loaders import load_split
    from ladder.pretrain import tokenizer as tok_stage
    from ladder.pretrain import train
    from ladder.pretrain.model import build_model, n_params

    work = Path(tempfile.mkdtemp(prefix="ladder-bench-"))
    build.main(["--output_dir", str(work / "data"), "--corpus_docs", "4000"])
    tok_stage.main(["--data", str(work / "data"), "--output_dir", str(work / "tok")])
    tok = AutoTokenizer.from_pretrained(work / "tok")
    blocks = train.pack(tok, load_split(work / "data", "corpus", "train")["text"], args.seq_len)

    rows = []
    model = build_model(args.model, tok, seed=0)
    bare_loop(model, blocks, args.batch_size, 3, 1e-3)  # warm-up (allocator, kernels)
    model = build_model(args.model, tok, seed=0)
    rows.append(("bare PyTorch loop", bare_loop(model, blocks, args.batch_size, args.steps, 1e-3)))

    cfg = train.PretrainConfig(data=str(work / "data"), tokenizer=str(work / "tok"), output_dir=str(work / "base"),
                               model=args.model, max_steps=args.steps, batch_size=args.batch_size,
                               seq_len=args.seq_len, eval_every=10**9, save_every=10**9, report_to="none",
                               logging_steps=10**9, warmup_steps=5, eval_batches=0)  # time training only
    t0 = time.perf_counter()
    m = train.train(cfg)
    rows.append(("ladder pretrain (loop)", m.tokens / m.seconds))
    wall = time.perf_counter() - t0

    base = rows[0][1]
    print(f"\nmodel {args.model} ({n_params(model) / 1e6:.2f}M params), {args.steps} steps x {args.batch_size} x "
          f"{args.seq_len} tokens, {threads} threads; ladder wall incl. setup+export {wall:.1f}s\n")
    print("| loop | tokens/s | ratio vs bare |")
    print("|---|---|---|")
    for name, tps in rows:
        print(f"| {name} | {tps:,.0f} | {tps / base:.2f} |")


if __name__ == "__main__":
    main()
