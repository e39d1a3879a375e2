"""The RL stages' log-prob forward without the batch's padding (ladder.padding) gives TRL's numbers.

TRL's own `_get_per_token_logps_and_entropies` is run on the full, padded batch and, through the
override in ladder's trainer class, on sorted and trimmed chunks: log-probs, entropies and gradients
must agree on every real completion token, while the padded share of the forward falls.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def batch(seed: int = 0, rows: int = 11, prompt: int = 9, completion: int = 14):
    """Left-padded prompts and right-padded completions of varied lengths, as TRL builds them."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 60, (rows, prompt + completion), generator=g)
    mask = torch.zeros_like(ids)
    for r in range(rows):
        p = int(torch.randint(2, prompt + 1, (1,), generator=g))
        c = int(torch.randint(1, completion + 1, (1,), generator=g))
        mask[r, prompt - p:prompt + c] = 1
    mask[0, :] = 0  # one row with the longest prompt and completion: the full batch is as wide as it
    mask[0, :prompt + completion] = 1
    return ids.masked_fill(mask == 0, 0), mask, completion


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=128, max_position_embeddings=64, pad_token_id=0)
    m = LlamaForCausalLM(cfg).float()
    add_fused_lm_head(m, temperature=0.7, outputs=("log_probs", "entropy"))  # as GRPOTrainer.__init__ does
    return m


@pytest.fixture(scope="module")
def trainer():
    """ladder's GRPO trainer class, built without __init__: the log-prob method needs only `accelerator` and
    `args.bf16` (fp32 here, so no autocast region: precision.cast_once)."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from ladder.grpo import trainer_class

    cls = trainer_class()
    t = object.__new__(cls)
    t.accelerator, t.args = Accelerator(cpu=True), SimpleNamespace(bf16=False)
    return t


def test_sorted_trimmed_chunks_give_trl_log_probs_entropies_and_gradients(model, trainer):
    import trl.trainer.grpo_trainer as grpo

    ids, mask, keep = batch()
    real = mask[:, -keep:].bool()
    full = grpo.GRPOTrainer._get_per_token_logps_and_entropies
    lp_full, ent_full, _ = full(trainer, model, ids, mask, keep, compute_entropy=True)
    (lp_full * real).sum().backward()
    g_full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    lp, ent, aux = trainer._get_per_token_logps_and_entropies(model, ids, mask, keep, batch_size=4,
                                                              compute_entropy=True)
    assert lp.shape == lp_full.shape and ent.shape == ent_full.shape and aux is None
    assert torch.allclose(lp[real], lp_full[real], atol=1e-5)
    assert torch.allclose(ent[real], ent_full[real], atol=1e-5)
    (lp * real).sum().backward()
    for a, b in zip(g_full, (p.grad for p in model.parameters())):
        assert torch.allclose(a, b, atol=1e-5)
    model.zero_grad()


def test_rows_come_back_in_their_order_and_the_padding_falls(model, trainer):
    from ladder import padding

    ids, mask, keep = batch(seed=1, rows=16)
    chunks = padding.plan(mask, keep, rows=4)
    assert sorted(i for idx, _, _ in chunks for i in idx) == list(range(16))
    assert padding.padded_fraction(mask, keep, chunks) < padding.padded_fraction(mask, keep) - 0.1
    # each row scored alone (no padding at all) is what the chunked forward gives it
    lp, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, keep, batch_size=4)
    for r in (3, 9):
        cols = mask[r].nonzero().flatten()
        start, stop = int(cols[0]), int(cols[-1]) + 1
        alone, _, _ = trainer._get_per_token_logps_and_entropies(model, ids[r:r + 1, start:stop],
                                                                 mask[r:r + 1, start:stop], stop - ids.shape[1] + keep)
        n = stop - (ids.shape[1] - keep)
        assert torch.allclose(lp[r, :n], alone[0], atol=1e-5)
        assert (lp[r, n:] == 0).all()  # past its completion: zero, as masked padding


def test_an_all_padding_completion_keeps_one_column(model, trainer):
    ids, mask, keep = batch(seed=2, rows=5)
    mask[2, -keep:] = 0
    lp, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, keep, batch_size=2)
    assert lp.shape == (5, keep) and torch.isfinite(lp).all()


def test_chunks_keep_to_their_token_budget_which_suits_the_device():
    from types import SimpleNamespace

    from ladder import padding

    ids, mask, keep = batch(seed=3, rows=20)
    for budget in (30, 60, 200):
        chunks = padding.plan(mask, keep, tokens=budget)
        assert sorted(i for idx, _, _ in chunks for i in idx) == list(range(20))
        for idx, start, stop in chunks:  # within the budget, or a single row wider than it
            assert len(idx) * (stop - start) <= budget or len(idx) == 1
    assert len(padding.plan(mask, keep, tokens=30)) > len(padding.plan(mask, keep, tokens=200))
    # on a CPU the budget shrinks as the model's MLP grows (its activations stay in cache); a GPU takes more
    cpu = torch.device("cpu")
    small, large = SimpleNamespace(intermediate_size=512), SimpleNamespace(intermediate_size=1536)
    assert padding.chunk_tokens(small, cpu) > padding.chunk_tokens(large, cpu) >= 256
    assert padding.chunk_tokens(large, torch.device("cuda")) == padding.GPU_CHUNK_TOKENS


def test_the_lm_head_projects_only_the_completions_positions_and_the_switch_is_undone(model, trainer, lm_head_calls):
    import trl.trainer.grpo_trainer as grpo
    import trl.trainer.utils as trl_utils

    from ladder import padding

    ids, mask, keep = batch(seed=4, rows=12)
    scored = int(mask[:, -keep:].sum())  # the completions' real tokens: the positions with a label
    grpo.GRPOTrainer._get_per_token_logps_and_entropies(trainer, model, ids, mask, keep)
    assert lm_head_calls == [(ids.shape[0] * (ids.shape[1] - 1), False)]  # TRL alone, on a CPU: every position
    lm_head_calls.clear()
    trainer._get_per_token_logps_and_entropies(model, ids, mask, keep, batch_size=4)
    # ladder's: three chunks, the completions only
    assert len(lm_head_calls) == 3 and sum(rows for rows, _ in lm_head_calls) == scored
    # TRL's choice comes back on leaving, and stays its own on devices other than the CPU
    before = trl_utils._use_triton
    with padding.scored_positions_only():
        assert trl_utils._use_triton(torch.device("cpu"))
        assert not trl_utils._use_triton(torch.device("meta"))
    assert trl_utils._use_triton is before and not before(torch.device("cpu"))
