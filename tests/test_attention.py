"""ladder.attention: short bf16 passes on the CPU run eager attention, everything else SDPA, and both
compute the same function (causal, padded, decoding, grouped heads), so the choice is speed only."""

from __future__ import annotations

import types

import pytest
import torch

from ladder import attention


@pytest.fixture
def calls(monkeypatch):
    """Count ladder's attention calls, and how many of them it hands to transformers' SDPA; the rest ran
    its own eager attention."""
    import transformers.integrations.sdpa_attention as sdpa_mod

    seen = {"eager": 0, "sdpa": 0}
    sdpa, ours = sdpa_mod.sdpa_attention_forward, attention.attention

    def counting_sdpa(*a, **k):
        seen["sdpa"] += 1
        return sdpa(*a, **k)

    def counting_ours(*a, **k):
        before = seen["sdpa"]
        out = ours(*a, **k)
        seen["eager"] += seen["sdpa"] == before
        return out

    from transformers import AttentionInterface

    monkeypatch.setattr(sdpa_mod, "sdpa_attention_forward", counting_sdpa)
    monkeypatch.setattr(attention, "attention", counting_ours)
    attention.register()
    monkeypatch.setitem(AttentionInterface._global_mapping, attention.NAME, counting_ours)  # what models call
    return seen


def module(groups: int = 1):
    return types.SimpleNamespace(num_key_value_groups=groups, is_causal=True, training=False)


def reference(q, k, v, mask=None, causal=True):
    """SDPA in fp32 on the same (bf16-rounded) inputs, heads repeated for grouped queries."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), attn_mask=mask, is_causal=causal and mask is None and q.shape[2] > 1)
    return out.transpose(1, 2)


def qkv(q_len, kv_len, heads=4, kv_heads=4, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, heads, q_len, 32, generator=g).to(dtype)
    k, v = (torch.randn(2, kv_heads, kv_len, 32, generator=g).to(dtype) for _ in range(2))
    return q, k, v


@pytest.mark.parametrize("q_len,kv_len,kv_heads", [(12, 12, 4), (1, 12, 4), (12, 12, 2), (3, 9, 4)])
def test_bf16_short_passes_run_eager_and_compute_sdpas_function(calls, q_len, kv_len, kv_heads):
    q, k, v = qkv(q_len, kv_len, kv_heads=kv_heads)
    out, _ = attention.attention(module(4 // kv_heads), q, k, v, None, dropout=0.0)
    assert calls == {"eager": 1, "sdpa": 0}
    ref = reference(q, k, v)
    if q_len not in (1, kv_len):  # a chunk of queries that are the last of kv_len positions
        full = torch.ones(kv_len, kv_len, dtype=torch.bool).tril()[-q_len:]
        ref = reference(q, k, v, mask=full)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


def test_a_padding_mask_is_applied_and_fully_masked_rows_stay_finite(calls):
    q, k, v = qkv(6, 6)
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool).tril()
    mask[0, :, :, :2] = False  # row 0 left-padded by 2: its first two queries see nothing at all
    out, _ = attention.attention(module(), q, k, v, mask, dropout=0.0)
    assert calls["eager"] == 1 and torch.isfinite(out.float()).all()
    keep = mask.any(-1)[:, 0]  # queries with something to look at: [batch, q]
    ref = reference(q, k, v, mask=mask)
    torch.testing.assert_close(out.float()[keep], ref[keep], atol=2e-2, rtol=2e-2)
    additive = torch.zeros(mask.shape).masked_fill_(~mask, float("-inf"))  # the other mask form
    out2, _ = attention.attention(module(), q, k, v, additive, dropout=0.0)
    torch.testing.assert_close(out2.float()[keep], ref[keep], atol=2e-2, rtol=2e-2)


def softmax_shapes(fn):
    """Run fn, returning the shapes of the score tensors its softmaxes saw."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._softmax.default:
                seen.append(tuple(args[0].shape))
            return func(*args, **(kwargs or {}))

    with Record():
        out = fn()
    return out, seen


@pytest.mark.parametrize("q_len,kv_len,padded,kv_heads,blocks", [
    (150, 150, False, 4, [(64, 64), (64, 128), (22, 150)]),
    (150, 150, True, 2, [(64, 64), (64, 128), (22, 150)]),  # grouped heads too
    (70, 100, False, 1, [(64, 94), (6, 100)]),  # the last 70 of 100 positions (a prefill after a cache)
])
def test_long_causal_passes_run_in_query_blocks_that_skip_future_keys(calls, q_len, kv_len, padded, kv_heads,
                                                                       blocks):
    q, k, v = qkv(q_len, kv_len, kv_heads=kv_heads)
    mask = None
    full = torch.ones(kv_len, kv_len, dtype=torch.bool).tril()[-q_len:]
    if padded:
        mask = full.expand(2, 1, q_len, kv_len).clone()
        mask[0, :, :, :5] = False  # row 0 left-padded by 5
    (out, _), shapes = softmax_shapes(lambda: attention.attention(module(4 // kv_heads), q, k, v, mask,
                                                                  dropout=0.0))
    assert calls == {"eager": 1, "sdpa": 0}
    assert [s[-2:] for s in shapes] == blocks  # [queries, keys] of each block's scores
    ref_mask = mask if padded else full
    keep = ref_mask.expand(2, 1, q_len, kv_len).any(-1)[:, 0]
    ref = reference(q, k, v, mask=ref_mask)
    torch.testing.assert_close(out.float()[keep], ref[keep], atol=2e-2, rtol=2e-2)


def test_a_mask_that_looks_ahead_is_not_cut_into_blocks(calls):
    q, k, v = qkv(100, 100)
    mask = torch.ones(100, 100, dtype=torch.bool).tril()
    mask[:10, :10] = True  # a prefix-LM: the first 10 positions see each other both ways
    mask = mask.expand(2, 1, 100, 100)
    (out, _), shapes = softmax_shapes(lambda: attention.attention(module(), q, k, v, mask, dropout=0.0))
    assert [s[-2:] for s in shapes] == [(100, 100)]
    torch.testing.assert_close(out.float(), reference(q, k, v, mask=mask), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("mask_batch", [2, 1])
def test_a_mask_per_head_reaches_each_head_of_a_group(calls, mask_batch):
    q, k, v = qkv(8, 8, kv_heads=2)  # 4 heads on 2 key heads
    mask = torch.ones(mask_batch, 4, 8, 8, dtype=torch.bool).tril()
    mask[:, 1, :, :3] = False  # head 1 (the second of key head 0's group) may not see the first 3 positions
    mask[:, 1, :3, 0] = True   # ... except each of its first 3 queries sees position 0
    out, _ = attention.attention(module(2), q, k, v, mask, dropout=0.0)
    assert calls == {"eager": 1, "sdpa": 0}
    torch.testing.assert_close(out.float(), reference(q, k, v, mask=mask), atol=2e-2, rtol=2e-2)


def test_fp32_long_and_unusual_passes_stay_on_sdpa(calls):
    attention.attention(module(), *qkv(12, 12, dtype=torch.float32), None)
    long_q, long_k, long_v = qkv(1, attention.EAGER_MAX_TOKENS + 1)
    attention.attention(module(), long_q, long_k, long_v, None)
    attention.attention(module(), *qkv(12, 12), None, s_aux=torch.zeros(4))  # attention sinks
    assert calls == {"eager": 0, "sdpa": 3}
    with torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 tensors under bf16 autocast count as bf16
        attention.attention(module(), *qkv(12, 12, dtype=torch.float32), None)
    assert calls["eager"] == 1


def test_a_model_on_ladders_attention_matches_sdpa_and_does_not_save_it(tmp_path, calls):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=128, max_position_embeddings=64)
    torch.manual_seed(0)
    theirs = AutoModelForCausalLM.from_config(config)
    ours = attention.use(AutoModelForCausalLM.from_config(config.__class__(**config.to_dict())))
    ours.load_state_dict(theirs.state_dict())
    assert ours.config._attn_implementation == "ladder" and theirs.config._attn_implementation == "sdpa"
    ids = torch.randint(0, 64, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, :7] = 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = ours(input_ids=ids, attention_mask=mask).logits.float()
        b = theirs(input_ids=ids, attention_mask=mask).logits.float()
    assert calls["eager"] == 2  # one per layer
    torch.testing.assert_close(a[mask.bool()], b[mask.bool()], atol=3e-2, rtol=3e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # greedy decoding, left-padded: the same tokens
        ga = ours.generate(input_ids=ids[:, :8], attention_mask=mask[:, :8] * 0 + 1, max_new_tokens=8,
                           do_sample=False, pad_token_id=0)
        gb = theirs.generate(input_ids=ids[:, :8], attention_mask=mask[:, :8] * 0 + 1, max_new_tokens=8,
                             do_sample=False, pad_token_id=0)
    assert torch.equal(ga, gb)
    ours.save_pretrained(tmp_path)
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config._attn_implementation == "sdpa"
    from ladder.models import load_model  # what every TRL stage loads through (PPO and pretraining call use too)

    cfg = types.SimpleNamespace(model=str(tmp_path), load_in_4bit=False)
    loaded = load_model(cfg, types.SimpleNamespace(pad_token_id=0), resized=False)
    assert loaded.config._attn_implementation == "ladder"


def test_models_without_pluggable_attention_keep_their_own():
    model = types.SimpleNamespace(_supports_attention_backend=False, set_attn_implementation=None)
    assert attention.use(model) is model
