"""Tokens/s of `ladder pretrain` against a bare PyTorch loop on the same model and batches, and their MFU.

Both train the same preset from the same init on the same packed blocks for the same number of
steps, in this one process, one after the other. The ratio says what ladder's loop costs
(accelerate, scheduler, grad clipping, logging); the goal is >= 0.95.

MFU: the torch.matmul peak is measured in the same run, with the same threads, for each precision the
machine has (fp32 always; bf16 too, said to be emulated where the CPU has neither AMX-BF16 nor
AVX512-BF16), and each loop's model FLOP/s (6 N + 12 L d s per token, bench/mfu.py) is divided by it.

    python bench/pretrain_throughput.py --model mini --steps 60
    python bench/pretrain_throughput.py --model mini --steps 60 --precision bf16   # both loops in bf16 autocast

Attention: both loops run ladder's (ladder.attention: eager for short bf16 passes on the CPU, else SDPA); a
third row runs the bare loop on transformers' own SDPA, to show what that choice is worth in this run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mfu  # noqa: E402  (bench/mfu.py)


def bare_loop(model, blocks, batch_size: int, steps: int, lr: float, precision: str = "fp32") -> float:
    import contextlib

    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    model.train()

    def autocast():  # what accelerate's mixed_precision="bf16" does on the CPU
        return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    start = time.perf_counter()
    for step in range(steps):
        batch = blocks[(step * batch_size) % (len(blocks) - batch_size):][:batch_size]
        with autocast():
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
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="both loops: fp32, or bf16 autocast with fp32 master weights")
    p.add_argument("--peak_sizes", default="256,512,1024", help="square matmul sizes for the measured peak")
    p.add_argument("--peak_seconds", type=float, default=0.3, help="seconds timed per size and layout")
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
    bare_loop(model, blocks, args.batch_size, 3, 1e-3, args.precision)  # warm-up (allocator, kernels)
    model = build_model(args.model, tok, seed=0)
    rows.append(("bare PyTorch loop", bare_loop(model, blocks, args.batch_size, args.steps, 1e-3, args.precision)))
    model = build_model(args.model, tok, seed=0)
    model.set_attn_implementation("sdpa")
    sdpa_row = ("bare loop, transformers' SDPA", bare_loop(model, blocks, args.batch_size, args.steps, 1e-3,
                                                           args.precision))

    cfg = train.PretrainConfig(data=str(work / "data"), tokenizer=str(work / "tok"), output_dir=str(work / "base"),
                               model=args.model, max_steps=args.steps, batch_size=args.batch_size,
                               seq_len=args.seq_len, eval_every=10**9, save_every=10**9, report_to="none",
                               logging_steps=10**9, warmup_steps=5, eval_batches=0,  # time training only
                               mixed_precision="bf16" if args.precision == "bf16" else "no")
    t0 = time.perf_counter()
    m = train.train(cfg)
    rows.append(("ladder pretrain (loop)", m.tokens / m.seconds))
    rows.append(sdpa_row)
    wall = time.perf_counter() - t0

    # the peak, measured now: same process, same threads, each precision this machine has
    dtypes = ("fp32", "bf16")
    peaks = mfu.measure_peaks("cpu", dtypes, [int(n) for n in args.peak_sizes.split(",")], args.peak_seconds)
    per_token = mfu.train_flops_per_token(mfu.matmul_params(model), model.config.num_hidden_layers,
                                          model.config.hidden_size, args.seq_len)

    base = rows[0][1]
    print(f"\nmodel {args.model} ({n_params(model) / 1e6:.2f}M params, {mfu.matmul_params(model) / 1e6:.2f}M in "
          f"matmuls), {args.steps} steps x {args.batch_size} x {args.seq_len} tokens, {args.precision}, {threads} "
          f"threads, {mfu.cpu_name()}; ladder wall incl. setup+export {wall:.1f}s")
    print(f"matmul peak, this run, {threads} threads: {mfu.peaks_line(peaks)}")
    print(f"model FLOPs/token = 6 N + 12 L d s = {per_token / 1e6:.1f} MFLOP; MFU = model FLOP/s / peak\n")
    peak = peaks[args.precision]
    label = f"MFU vs {args.precision} peak" + (" (emulated)" if "emulated" in peak["note"] else "")
    print(f"| loop | tokens/s | ratio vs bare | model FLOP/s | {label} |")
    print("|---|---|---|---|---|")
    for name, tps in rows:
        achieved = per_token * tps
        print(f"| {name} | {tps:,.0f} | {tps / base:.2f} | {mfu.fmt_flops(achieved)} | {achieved / peak['flops']:.1%} |")

if __name__ == "__main__":
    main()
