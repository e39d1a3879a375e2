"""The attention every ladder model runs: transformers' SDPA, except for short bf16 passes on the CPU.

SDPA's pick on the CPU is torch 2.13's flash-attention kernel. In bf16 it is slow for short sequences: below
~192 tokens its backward takes twice the time of plain matmul + softmax (and of its own fp32), and its
one-query decode step is 4x its own fp32 time. So up to EAGER_MAX_TOKENS keys, a bf16 pass on the CPU
runs eager attention instead (matmul, softmax, matmul; the scores kept in fp32); every other pass
(fp32, a GPU, longer sequences, models whose attention eager cannot express here) stays on SDPA. The choice
is made per call, so one model can train on short sequences in eager and sample past 256 tokens in SDPA.

Measured on the AVX512-BF16 EPYC (2 threads, torch 2.13; bench/RESULTS.md), one training step of 4,096
tokens of the mini model, SDPA -> eager: 234 -> 156 ms at 128 tokens, 196 -> 165 at 192, 212 -> 193 at 256,
but 229 -> 321 at 384; head size 64 ("small"): 1034 -> 858 ms at 128, 1096 -> 933 at 256. In fp32 the two
tie at 128 tokens and flash wins beyond, so fp32 keeps SDPA everywhere.

Registered with transformers' AttentionInterface as "ladder" (with SDPA's boolean masks); `use(model)` sets
it. A checkpoint does not save it: saved models load with transformers' default, in vLLM as anywhere.
"""

from __future__ import annotations

import functools

NAME = "ladder"
EAGER_MAX_TOKENS = 256
# keyword arguments some models pass that eager attention here does not apply (logit soft-capping,
# attention sinks, relative position biases, paged caches): those calls stay on SDPA, which handles them
# as transformers does, or refuses them as it does
SDPA_ONLY = ("softcap", "s_aux", "sinks", "position_bias", "cache", "head_mask")


def _compute_dtype(query):
    import torch

    device = query.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else query.dtype


@functools.lru_cache(maxsize=16)
def _causal_bias(q_len: int, kv_len: int):
    """Additive causal mask for q_len queries that are the last of kv_len positions (decode: q_len 1)."""
    import torch

    future = torch.ones(q_len, kv_len, dtype=torch.bool).triu_(kv_len - q_len + 1)
    return torch.zeros(q_len, kv_len).masked_fill_(future, torch.finfo(torch.float32).min)


def attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' attention signature: (module, q, k, v, mask, **kwargs) -> (output, weights or None)."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    dtype = _compute_dtype(query)
    if (query.device.type != "cpu" or dtype != torch.bfloat16 or key.shape[2] > EAGER_MAX_TOKENS
            or any(kwargs.get(k) is not None for k in SDPA_ONLY)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    is_causal = kwargs.pop("is_causal", None)
    if attention_mask is not None and attention_mask.dtype != torch.bool:  # already additive
        bias = attention_mask.float()
    elif attention_mask is not None:  # SDPA's mask: True where a query may look
        bias = torch.zeros(attention_mask.shape, device=query.device)
        bias.masked_fill_(~attention_mask, torch.finfo(torch.float32).min)
    elif (is_causal if is_causal is not None else getattr(module, "is_causal", True)) and query.shape[2] > 1:
        bias = _causal_bias(query.shape[2], key.shape[2])  # SDPA would have passed is_causal
    else:
        bias = None
    scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    with torch.autocast(query.device.type, enabled=False):
        # scores in fp32: rounded to bf16 (transformers' eager) they moved the logits up to 1.09, against 0.14
        scores = torch.matmul(query.float(), key.float().transpose(2, 3)) * scaling
        if bias is not None:
            scores = scores + bias
        probs = torch.softmax(scores, dim=-1).to(dtype)
        if kwargs.get("dropout") and module.training:
            probs = torch.nn.functional.dropout(probs, p=kwargs["dropout"])
        out = torch.matmul(probs, value.to(dtype))  # probabilities x values: a bf16 product
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
