"""Sampled generation draws its tokens by inverting each row's cumulative sum (ladder.generation.draw_one)
instead of torch.multinomial's one exponential per vocabulary entry: the same distribution, never a token of
probability 0, torch's own error for rows it would refuse, and every HF generate ladder runs (its own and
TRL's, in GRPO/RLOO) goes through it.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def test_draws_follow_each_rows_distribution_and_never_pick_a_zero():
    from ladder.generation import draw_one

    rows = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0],
                         [0.0, 0.0, 0.0, 0.0, 1.0],
                         [0.1, 0.1, 0.1, 0.1, 0.6]])
    n = 20_000
    g = torch.Generator().manual_seed(0)
    picked = draw_one(rows.repeat(n, 1), 1, generator=g)
    assert picked.shape == (3 * n, 1) and picked.dtype == torch.long
    for r in range(3):
        counts = torch.bincount(picked[r::3, 0], minlength=5).double()
        p = rows[r].double()
        se = (p * (1 - p) / n).sqrt()
        assert ((counts / n - p).abs() <= 5 * se + 1e-12).all(), (r, counts / n)
        assert (counts[p == 0] == 0).all()
    # unnormalised rows (logits processors may leave them so) are drawn in proportion, as torch does
    assert draw_one(torch.tensor([[0.0, 3.0, 0.0]]).repeat(100, 1), 1).eq(1).all()


def test_draws_at_the_very_bottom_and_top_take_the_first_and_last_tokens_that_can_be_drawn(monkeypatch):
    from ladder import generation

    row = torch.tensor([[0.0, 0.5, 0.5, 0.0, 0.0]])
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.zeros(*a[0], dtype=k.get("dtype")))  # u = 0
    assert generation.draw_one(row, 1).item() == 1
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.ones(*a[0], dtype=k.get("dtype")))  # u = total
    assert generation.draw_one(row, 1).item() == 2


def test_rows_torch_refuses_and_other_calls_are_torchs_own():
    from ladder.generation import draw_one

    for bad in ([[0.5, float("nan")]], [[0.5, -0.1, 0.6]], [[0.0, 0.0]], [[float("inf"), 1.0]]):
        with pytest.raises(RuntimeError, match="probability tensor|invalid multinomial"):
            draw_one(torch.tensor(bad), 1)
    many = draw_one(torch.tensor([[0.2, 0.3, 0.5]]), 2)  # two samples without replacement: torch's
    assert many.shape == (1, 2) and many[0, 0] != many[0, 1]


def test_the_swap_is_scoped_nests_and_is_undone_on_error():
    from ladder import generation

    real = torch.multinomial
    with generation.cdf_sampling():
        assert torch.multinomial is generation.draw_one
        with generation.cdf_sampling():
            assert torch.multinomial is generation.draw_one
        assert torch.multinomial is generation.draw_one  # the inner exit leaves the outer swap in place
    assert torch.multinomial is real
    with pytest.raises(ValueError), generation.cdf_sampling():
        raise ValueError
    assert torch.multinomial is real


@pytest.fixture(scope="module")
def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(["<pad>", "<eos>"] + list("abcdefghij 0123456789"))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=1,
                      intermediate_size=64, max_position_embeddings=64, pad_token_id=0, eos_token_id=1)
    return LlamaForCausalLM(cfg).eval(), tok


def test_ladders_sampled_generate_draws_through_it_and_greedy_does_not(tiny, monkeypatch):
    from ladder import generation

    model, tok = tiny
    calls = []
    draw = generation.draw_one
    monkeypatch.setattr(generation, "draw_one", lambda *a, **k: calls.append(1) or draw(*a, **k))
    enc = tok(["ab 12", "c 3"], return_tensors="pt", padding=True)
    config = generation.generation_config(tok, [1], max_new_tokens=5, temperature=1.0)
    torch.manual_seed(3)
    first = generation.generate_ids(model, enc, config)
    assert len(calls) >= 1 and first.shape[0] == 2
    torch.manual_seed(3)
    assert torch.equal(generation.generate_ids(model, enc, config), first)  # seeded: the same draws
    calls.clear()
    generation.generate_ids(model, enc, generation.generation_config(tok, [1], max_new_tokens=5, temperature=0.0))
    assert calls == []


def test_trls_hf_rollouts_in_grpo_and_rloo_sample_through_it(monkeypatch):
    from types import SimpleNamespace

    import trl.trainer.grpo_trainer as grpo
    import trl.trainer.rloo_trainer as rloo

    from ladder import generation
    from ladder.online_rl import trainer_class

    for module, name in ((grpo, "GRPOTrainer"), (rloo, "RLOOTrainer")):
        seen = []
        monkeypatch.setattr(getattr(module, name), "_generate_single_turn",
                            lambda self, *a, **k: seen.append(torch.multinomial is generation.draw_one))
        t = object.__new__(trainer_class(module, name))
        t.args, t.use_vllm = SimpleNamespace(bf16=False), False
        t.accelerator = SimpleNamespace(device=torch.device("cpu"))
        t._generate_single_turn()
        assert seen == [True], name
    assert torch.multinomial is not generation.draw_one
