"""SFT samples/s and peak memory, full fine-tuning vs LoRA, on the same model and data, and their MFU.

Each variant runs `ladder sft` in its own process (so each peak RSS is its own) on a `mini` base
built from scratch here (random init is fine for throughput). Prints a table with the LoRA/full ratio.

MFU: tokens/s = samples/s x the mean tokens of the samples trained on (chat template included, cut at
max_length 256); model FLOPs per token 6 N for full fine-tuning, 4 N for LoRA (forward 2 N + the
backward's input gradients 2 N; no weight gradients for the frozen matrices; the adapters' own FLOPs
left out), N = parameters in matrix products; divided by the torch.matmul peak measured in this run,
with the stages' threads, for fp32 (what SFT trains in on the CPU) and bf16 (said to be emulated
where the CPU has neither AMX-BF16 nor AVX512-BF16). bench/mfu.py.

    python bench/sft_throughput.py --model mini --samples 512
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mfu  # noqa: E402  (bench/mfu.py)


def mean_tokens(tokenizer, data_dir: Path, samples: int, max_length: int = 256) -> float:
    """Mean tokens of the first `samples` SFT chats, chat template included, cut at max_length."""
    rows = [json.loads(line) for line in (data_dir / "sft_train.jsonl").read_text().splitlines()[:samples]]
    lengths = [min(max_length, len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)
                                   ["input_ids"])) for r in rows]
    return sum(lengths) / len(lengths)

RUN = """
import json, resource, sys
from ladder import sft
from ladder.manifest import read_manifest
sft.main(sys.argv[1:])
man = read_manifest(sys.argv[sys.argv.index('--output_dir') + 1])
m = man['metrics']
print('RESULT ' + json.dumps({'samples_per_second': m['samples_per_second'],
                              'bf16': bool(man.get('config', {}).get('bf16')),
                              'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mini")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--peak_sizes", default="256,512,1024", help="square matmul sizes for the measured peak")
    p.add_argument("--peak_seconds", type=float, default=0.3, help="seconds timed per size and layout")
    args = p.parse_args()

    from transformers import AutoTokenizer

    from ladder.data import build
    from ladder.pretrain import tokenizer as tok_stage
    from ladder.pretrain.model import build_model, n_params

    work = Path(tempfile.mkdtemp(prefix="ladder-sft-bench-"))
    build.main(["--output_dir", str(work / "data"), "--corpus_docs", "2000"])
    tok_stage.main(["--data", str(work / "data"), "--output_dir", str(work / "tok")])
    tok = AutoTokenizer.from_pretrained(work / "tok")
    model = build_model(args.model, tok)
    model.save_pretrained(work / "base")
    tok.save_pretrained(work / "base")

    rows = []
    for name, extra in [("full", []), ("LoRA r=16", ["--use_lora", "true", "--lora_r", "16"])]:
        cmd = [sys.executable, "-c", RUN, "--model", str(work / "base"), "--data", str(work / "data"),
               "--output_dir", str(work / name.split()[0]), "--max_train_samples", str(args.samples),
               "--num_train_epochs", "1", "--per_device_train_batch_size", str(args.batch_size),
               "--eval_samples", "0", "--test_split", "null", "--report_to", "none", "--save_strategy", "no", *extra]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
        rows.append((name, result["samples_per_second"], result["peak_rss_mb"], "bf16" if result["bf16"] else "fp32"))

    # the peak, measured now, with the threads the stages ran with (ladder.runtime.setup_threads)
    from ladder.runtime import setup_threads

    threads = setup_threads()
    peaks = mfu.measure_peaks("cpu", ("fp32", "bf16"), [int(n) for n in args.peak_sizes.split(",")],
                              args.peak_seconds)
    tokens = mean_tokens(tok, work / "data", args.samples)
    n = mfu.matmul_params(model)

    full = rows[0]
    print(f"\nmodel {args.model} ({n_params(model) / 1e6:.2f}M params, {n / 1e6:.2f}M in matmuls), {args.samples} "
          f"samples of {tokens:.0f} tokens on average, batch {args.batch_size}, one process, {threads} threads, "
          f"{mfu.cpu_name()}")
    print(f"matmul peak, this run: {mfu.peaks_line(peaks)}")
    print("model FLOPs/token: full 6 N, LoRA 4 N; MFU = model FLOP/s / the peak of the precision the run trained in "
          "(its manifest's bf16)\n")
    print("| variant | samples/s | ratio vs full | peak RSS (MB) | tokens/s | model FLOP/s | precision | MFU |")
    print("|---|---|---|---|---|---|---|---|")
    for name, sps, rss, precision in rows:
        achieved = (4 if name.startswith("LoRA") else 6) * n * sps * tokens
        note = " (emulated)" if "emulated" in peaks[precision]["note"] else ""
        print(f"| {name} | {sps:.1f} | {sps / full[1]:.2f} | {rss:,.0f} | {sps * tokens:,.0f} | "
              f"{mfu.fmt_flops(achieved)} | {precision}{note} | {achieved / peaks[precision]['flops']:.1%} |")


if __name__ == "__main__":
    main()
