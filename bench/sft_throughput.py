"""SFT samples/s and peak memory, full fine-tuning vs LoRA, on the same model and data.

Each variant runs `ladder sft` in its own process (so each peak RSS is its own) on a `mini` base
built from scratch here (random init is fine for throughput). Prints a table with the LoRA/full ratio.

    python bench/sft_throughput.py --model mini --samples 512
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = """
import json, resource, sys
from ladder import sft
from ladder.manifest import read_manifest
sft.main(sys.argv[1:])
m = read_manifest(sys.argv[sys.argv.index('--output_dir') + 1])['metrics']
print('RESULT ' + json.dumps({'samples_per_second': m['samples_per_second'],
                              'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mini")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=16)
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
        rows.append((name, result["samples_per_second"], result["peak_rss_mb"]))

    full = rows[0]
    print(f"\nmodel {args.model} ({n_params(model) / 1e6:.2f}M params), {args.samples} samples, "
          f"batch {args.batch_size}, one process\n")
    print("| variant | samples/s | ratio vs full | peak RSS (MB) |")
    print("|---|---|---|---|")
    for name, sps, rss in rows:
        print(f"| {name} | {sps:.1f} | {sps / full[1]:.2f} | {rss:,.0f} |")


if __name__ == "__main__":
    main()
