"""The attention every ladder model runs: transformers' SDPA, except for short bf16 passes on the CPU.

SDPA's pick on the CPU is torch 2.13's flash-attention kernel. In bf16 it is slow for short sequences: below
~192 tokens its backward takes twice the time of plain matmul + softmax (and of its own fp32), and its
one-query decode step is 4x its own fp32 time. So up to EAGER_MAX_TOKENS keys, a bf16 pass on the CPU
runs eager attention instead (matmul, softmax, matmul; the scores kept in fp32); every other pass
(fp32, a GPU, longer sequences, models whose attention eager cannot express here) stays on SDPA. The choice
is made per call, so one model can train on short sequences in eager and sample long ones in SDPA.

Two things keep eager fast. A causal pass is cut into blocks of QUERY_BLOCK queries, each looking only at
the keys up to its own last query: the scores no query of a block may see are never made, and the smaller
[batch, heads, queries, keys] score tensors stay in cache (at head size 32 their memory traffic costs as
much as the products' arithmetic). And grouped heads (GQA) share their key head without copying it.

Measured on the AVX512-BF16 EPYC (2 threads, torch 2.13; bench/RESULTS.md), forward + backward of 4,096
tokens, SDPA against this module: mini model 229 -> 152 ms at 128 tokens, 228 -> 179 at 256, 291 -> 228 at
512, but 312 -> 354 at 1,024; four SmolLM2-135M layers (head size 64, 3 query heads per key head) 863 -> 697
ms at 128, 961 -> 839 at 512, a tie at 1,024. A bf16 decode step of 64 SmolLM2 rows over 300 cached keys:
9.8 ms in SDPA, 1.3 here. In fp32 the two tie at 128 tokens and flash wins beyond, so fp32 keeps SDPA
everywhere.

Registered with transformers' AttentionInterface as "ladder" (with SDPA's boolean masks); `use(model)` sets
it. A checkpoint does not save it: saved models load with transformers' default, in vLLM as anywhere.
"""

from __future__ import annotations

import functools

NAME = "ladder"
EAGER_MAX_TOKENS = 512  # blocked eager wins to 512 keys, ties or loses from ~768
QUERY_BLOCK = 64  # queries per block of a causal eager pass (32 and 64 tie at 128 tokens; 64 is faster at 256)
# keyword arguments some models pass that eager attention here does not apply (logit soft-capping,
# attention sinks, relative position biases, paged caches): those calls stay on SDPA, which handles them
# as transformers does, or refuses them as it does
SDPA_ONLY = ("softcap", "s_aux", "sinks", "position_bias", "cache", "head_mask")


def _compute_dtype(query):
    import torch

    device = query.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else query.dtype


@functools.lru_cache(maxsize=16)
def _future(q_len: int, kv_len: int):
    """True where a query (the last q_len of kv_len positions; decode: q_len 1) would look past itself."""
    import torch

    return torch.ones(q_len, kv_len, dtype=torch.bool).triu_(kv_len - q_len + 1)


@functools.lru_cache(maxsize=16)
def _causal_bias(q_len: int, kv_len: int):
    """Additive causal mask for q_len queries that are the last of kv_len positions."""
    import torch

    return torch.zeros(q_len, kv_len).masked_fill_(_future(q_len, kv_len), torch.finfo(torch.float32).min)


def attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' attention signature: (module, q, k, v, mask, **kwargs) -> (output, weights or None)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = _compute_dtype(query)
    if (query.device.type != "cpu" or dtype != torch.bfloat16 or key.shape[2] > EAGER_MAX_TOKENS
            or any(kwargs.get(k) is not None for k in SDPA_ONLY)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    is_causal = kwargs.pop("is_causal", None)
    q_len, kv_len = query.shape[2], key.shape[2]
    if attention_mask is not None and attention_mask.dtype != torch.bool:  # already additive
        bias, causal = attention_mask.float(), False
    elif attention_mask is not None:  # SDPA's mask: True where a query may look
        bias = torch.zeros(attention_mask.shape, device=query.device)
        bias.masked_fill_(~attention_mask, torch.finfo(torch.float32).min)
        # blocks only where no query may look past itself (a prefix-LM's or a bidirectional mask may); a pass
        # of one block (decoding, short passes) needs no such scan of its mask in every layer
        causal = q_len > QUERY_BLOCK and attention_mask.shape[-2] == q_len \
            and not (attention_mask & _future(q_len, kv_len)).any()
    elif (is_causal if is_causal is not None else getattr(module, "is_causal", True)) and q_len > 1:
        bias, causal = _causal_bias(q_len, kv_len), True  # SDPA would have passed is_causal
    else:
        bias, causal = None, False
    scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
    batch, heads, _, head_dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    if bias is not None:  # broadcast over the heads that share a key head: [..., groups, q, kv]
        bias = bias.view(bias.shape[0], kv_heads, groups, *bias.shape[-2:]) if bias.dim() == 4 and bias.shape[1] > 1 \
            else bias.unsqueeze(-3)
    step = QUERY_BLOCK if causal else q_len
    with torch.autocast(query.device.type, enabled=False):
        # scores in fp32: rounded to bf16 (transformers' eager) they moved the logits up to 1.09, against 0.14;
        # scaled on the queries, a pass over [q, head size] values instead of one over [q, kv] scores.
        # Grouped heads (GQA) stack their queries against their one key head: K and V are never copied per
        # head (repeat_kv's copy made a bf16 decode step over 300 keys of SmolLM2 2x slower than SDPA's)
        query = (query.float() * scaling).view(batch, kv_heads, groups, q_len, head_dim)
        key, value = key.float().transpose(2, 3), value.to(dtype)
        blocks = []
        for lo in range(0, q_len, step):
            hi = min(q_len, lo + step)
            keys = kv_len - q_len + hi if causal else kv_len  # the keys this block's last query may see
            rows = query[:, :, :, lo:hi].reshape(batch, kv_heads, groups * (hi - lo), head_dim)
            scores = torch.matmul(rows, key[..., :keys]).view(batch, kv_heads, groups, hi - lo, keys)
            if bias is not None:
                scores = scores + bias[..., lo:hi, :keys]
            probs = torch.softmax(scores, dim=-1).to(dtype)
            if kwargs.get("dropout") and module.training:
                probs = torch.nn.functional.dropout(probs, p=kwargs["dropout"])
            # probabilities x values: a bf16 product
            out = torch.matmul(probs.view(batch, kv_heads, groups * (hi - lo), keys), value[:, :, :keys])
            blocks.append(out.view(batch, heads, hi - lo, head_dim))
        out = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=2)
    return out.transpose(1, 2).contiguous(), None


@functools.cache
def register() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def use(model):
    """Run `model` (a transformers model, before any PEFT wrapping) on ladder's attention where its class
    supports pluggable attention; others keep their own. Returns the model."""
    if getattr(model, "_supports_attention_backend", False):
        model.set_attn_implementation(register())
    return model
