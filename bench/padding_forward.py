"""An RL step's log-prob forward and backward: TRL's one padded batch against ladder.padding's sorted,
trimmed chunks, on real rollouts.

The model samples `--generations` completions for each of `--prompts` held-out prompts (HF generate at
`--temperature`, up to `--length` tokens), which are laid out as TRL's GRPO trainer lays them out
(prompts left-padded, completions right-padded, one row each). Then, alternating, `--rounds` times each:
TRL's `_get_per_token_logps_and_entropies` on the whole batch, and ladder's override of it (the
trainer GRPO and RLOO run; with --rows, also chunks of fixed numbers of rows), each followed by the
backward of the per-token loss, after one untimed pass. The table gives the
padded share of the token positions each computes, the median seconds, and the ratio.

    python bench/padding_forward.py --model runs/tiny/sft --data runs/tiny/data
    python bench/padding_forward.py --model runs/tiny/sft --data runs/tiny/data --prompts 4 --rounds 1  # smoke
"""

from __future__ import annotations

import argparse
import statistics
import time


def rollouts(model, tokenizer, prompts, generations: int, length: int, temperature: float):
    """input_ids and attention_mask as TRL builds them (ladder's HF sampler: prompts left-padded, each
    completion masked after its first EOS), and the completion width (logits_to_keep)."""
    import torch

    from ladder.samplers import HFSampler

    torch.manual_seed(0)
    ro = HFSampler(temperature, length)(model, tokenizer, [p for p in prompts for _ in range(generations)])
    return ro.seq, ro.attention, ro.seq.shape[1] - ro.n_prompt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="runs/tiny/sft")
    p.add_argument("--data", default="runs/tiny/data")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--length", type=int, default=96)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rows", default=None, help="also time chunks of these fixed numbers of rows, e.g. 8,32")
    args = p.parse_args()

    from ladder.runtime import setup_threads

    setup_threads()
    import torch
    import trl.trainer.grpo_trainer as grpo
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.utils import add_fused_lm_head

    from ladder import padding
    from ladder.data.loaders import load_split
    from ladder.grpo import trainer_class

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    prompts = [r["prompt"] for r in load_split(args.data, "rl", "test", limit=args.prompts)]
    ids, mask, keep = rollouts(model, tokenizer, prompts, args.generations, args.length, args.temperature)
    add_fused_lm_head(model, temperature=args.temperature, outputs=("log_probs", "entropy"))
    model.train()
    trainer = object.__new__(trainer_class())  # the method needs only `accelerator`
    trainer.accelerator = Accelerator(cpu=True)
    real = mask[:, -keep:].float()

    full = grpo.GRPOTrainer._get_per_token_logps_and_entropies
    variants = {"TRL, one padded batch": lambda: full(trainer, model, ids, mask, keep, compute_entropy=True)}
    padded = {"TRL, one padded batch": padding.padded_fraction(mask, keep)}
    tokens = padding.chunk_tokens(model.config, ids.device)
    name = f"ladder (chunks of <= {tokens} tokens)"
    variants[name] = lambda: trainer._get_per_token_logps_and_entropies(model, ids, mask, keep, compute_entropy=True)
    padded[name] = padding.padded_fraction(mask, keep, padding.plan(mask, keep, tokens=tokens))
    for rows in [int(r) for r in (args.rows or "").split(",") if r]:
        name = f"sorted + trimmed chunks of {rows} rows"
        variants[name] = lambda rows=rows: padding.by_length(
            lambda i, m, k, **kw: full(trainer, model, i, m, k, **kw), ids, mask, keep, rows=rows,
            compute_entropy=True)
        padded[name] = padding.padded_fraction(mask, keep, padding.plan(mask, keep, rows=rows))
    # one untimed pass first: the first forward + backward of a process also pays for allocations
    warm, _, _ = variants["TRL, one padded batch"]()
    (warm * real).sum().backward()
    model.zero_grad(set_to_none=True)
    times = {k: [] for k in variants}
    for r in range(args.rounds):
        for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            start = time.perf_counter()
            logps, _, _ = variants[name]()
            (-(logps * real).sum() / real.sum()).backward()
            times[name].append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)

    lengths = mask[:, -keep:].sum(1).float()
    print(f"\nmodel {args.model}, {len(ids)} rollouts ({args.prompts} prompts x {args.generations}), "
          f"{ids.shape[1] - keep} prompt columns + {keep} completion columns; completion length mean "
          f"{lengths.mean():.0f}, max {lengths.max():.0f} tokens; {torch.get_num_threads()} threads, "
          f"median of {args.rounds}\n")
    base = statistics.median(times["TRL, one padded batch"])
    print("| forward + backward | padded positions | seconds | ratio vs TRL |\n|---|---|---|---|")
    for name in variants:
        t = statistics.median(times[name])
        print(f"| {name} | {padded[name]:.1%} | {t:.3f} | {base / t:.2f}x |")


if __name__ == "__main__":
    main()
