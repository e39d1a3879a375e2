"""Less padding in an RL stage's log-prob forward: rows sorted by length, cut into chunks of a size that
suits the device, each chunk trimmed to its own longest row.

TRL's GRPO/RLOO trainers score a whole generation batch in one forward, every row padded to the batch's
longest prompt (on the left) and longest completion (on the right). With completions of 20 to 96 tokens,
a third or more of that forward and its backward is padding (measured on the tiny ladder: bench/RESULTS.md).
TRL has no padding-free path for these trainers, and packing rows into one sequence would need a varlen
attention kernel (flash-attention) to pay: without one (CPU, SDPA) the attention of a packed row covers
every other row too. Sorting and trimming needs no kernel: the same rows, the same masks, fewer columns.

The result is the same function of the inputs: padded positions are masked (attention mask, and labels of
-100) in the full forward as well. Trimming leading pads shifts a row's absolute positions by a constant,
which rotary embeddings do not see (they depend on the distance between tokens), so the log-probs agree
to float rounding (tests/test_padding.py).

The prompt's positions go the same way out of the LM head. TRL's fused head (`add_fused_lm_head`) projects
only the positions that have a label on a Triton device, but every position elsewhere (so that compiled
tile shapes stay fixed, for Neuron). On a CPU nothing is compiled, and projecting a prompt's positions onto
the vocabulary is work whose result is masked: on SmolLM2-135M (49k-word vocabulary), 8 rows of 48 prompt
+ 64 completion tokens took 2.59 s forward + backward against 1.84 with the completion alone.
`scored_positions_only()` makes the CPU take TRL's own compact path: around the RL stages' log-prob forward
here, and around SFT's and DPO's training, whose TRL trainers use the same head (a prompt's tokens have no
label there either; SmolLM2 SFT 2.3-2.7 -> 3.6-3.9 samples/s, the same losses).
"""

from __future__ import annotations

import contextlib

# How big a chunk is: on a CPU, its MLP activations (tokens x intermediate size) ~1M values (4 MB in fp32),
# which stay in cache. Measured on the 2-core EPYC (bench/padding_forward.py, forward + backward): the tiny
# ladder's 2M model was fastest at 32 rows of ~50 tokens (4-16 rows were slower), SmolLM2-135M at 8 rows of
# ~100 tokens (1.4x faster than 32). On a GPU, larger matmuls pay: 16k tokens a chunk.
CPU_CHUNK_VALUES = 1_000_000
GPU_CHUNK_TOKENS = 16_384


@contextlib.contextmanager
def scored_positions_only():
    """Within it, TRL's fused LM head on a CPU projects only the positions with a label, as it does on a
    Triton device (`trl.trainer.utils._use_triton` decides nothing else there; the kernels keep their own)."""
    import trl.trainer.utils as trl_utils

    on_triton = trl_utils._use_triton
    trl_utils._use_triton = lambda device: device.type == "cpu" or on_triton(device)
    try:
        yield
    finally:
        trl_utils._use_triton = on_triton


def chunk_tokens(config, device) -> int:
    """Token positions (rows x trimmed width) per chunk for a model of this config on this device."""
    if getattr(device, "type", "cpu") != "cpu":
        return GPU_CHUNK_TOKENS
    inner = getattr(config, "intermediate_size", None) or 4 * getattr(config, "hidden_size", 1024)
    return max(256, CPU_CHUNK_VALUES // inner)


def spans(attention_mask, logits_to_keep: int):
    """Per row: the first real token (prompts are left-padded) and one past the last (completions are
    right-padded), as python ints."""
    import torch

    width = attention_mask.shape[1]
    real = attention_mask.bool()
    any_real = real.any(dim=1)
    # a row is never trimmed into its completion (its columns start at width - logits_to_keep), and keeps
    # at least one completion column (TRL reads `logits_to_keep` columns: 0 would mean all of them); a row
    # with no real token at all keeps just that one
    first = torch.where(any_real, real.int().argmax(dim=1), width).clamp(max=width - logits_to_keep)
    last = torch.where(any_real, width - real.flip(1).int().argmax(dim=1), 0).clamp(min=width - logits_to_keep + 1)
    return first.tolist(), last.tolist()


def plan(attention_mask, logits_to_keep: int, *, tokens: int | None = None,
         rows: int | None = None) -> list[tuple[list[int], int, int]]:
    """Chunks of row indices, shortest rows first, each with the columns it keeps, [start, stop): a chunk
    grows while its rows x trimmed width stays within `tokens` and its rows within `rows` (one row at least)."""
    first, last = spans(attention_mask, logits_to_keep)
    order = sorted(range(len(first)), key=lambda i: (last[i] - first[i], i))
    chunks, idx, start, stop = [], [], 0, 0
    for i in order:
        lo, hi = (min(start, first[i]), max(stop, last[i])) if idx else (first[i], last[i])
        if idx and ((tokens and (len(idx) + 1) * (hi - lo) > tokens) or (rows and len(idx) >= rows)):
            chunks.append((idx, start, stop))
            idx, lo, hi = [], first[i], last[i]
        idx, start, stop = idx + [i], lo, hi
    if idx:
        chunks.append((idx, start, stop))
    return chunks


def padded_fraction(attention_mask, logits_to_keep: int, chunks=None) -> float:
    """Share of the forward's token positions that are padding: in one full-width batch, or in `chunks`
    (from `plan`)."""
    real = int(attention_mask.sum())
    if chunks is None:
        return 1 - real / attention_mask.numel()
    return 1 - real / sum(len(idx) * (stop - start) for idx, start, stop in chunks)


def by_length(forward, input_ids, attention_mask, logits_to_keep: int, *, tokens: int | None = None,
              rows: int | None = None, compute_entropy: bool = False, **kwargs):
    """`forward(input_ids, attention_mask, logits_to_keep, compute_entropy=..., **kwargs)` -> (logps,
    entropies or None, aux or None), as TRL's `_get_per_token_logps_and_entropies`, run on sorted,
    trimmed chunks; the per-token outputs come back in the rows' order, `logits_to_keep` wide (a chunk's
    columns past its longest completion are zero: masked, as padding is in the full forward)."""
    import torch

    width = input_ids.shape[1]
    logps, entropies, order = [], [], []
    for idx, start, stop in plan(attention_mask, logits_to_keep, tokens=tokens, rows=rows):
        keep = logits_to_keep - (width - stop)
        sel = torch.tensor(idx, device=input_ids.device)
        lp, ent, _ = forward(input_ids[sel, start:stop], attention_mask[sel, start:stop], keep,
                               compute_entropy=compute_entropy, **kwargs)
        pad = logits_to_keep - keep
        logps.append(torch.nn.functional.pad(lp, (0, pad)))
        if compute_entropy:
            entropies.append(torch.nn.functional.pad(ent, (0, pad)))
        order.extend(idx)
    inverse = torch.empty(len(order), dtype=torch.long, device=input_ids.device)
    inverse[torch.tensor(order, device=input_ids.device)] = torch.arange(len(order), device=input_ids.device)
    logps = torch.cat(logps)[inverse]
    return logps, (torch.cat(entropies)[inverse] if compute_entropy else None), None
