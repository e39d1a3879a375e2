"""PPO maths against values computed by hand."""

import math

import pytest
import torch

from ladder import ppo_math as M


def test_gae_on_a_short_trajectory():
    # rewards r = [0, 0, 1], values V = [0.5, 0.6, 0.7], gamma = 1, lambda = 0.5
    r, v, m = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.7]]), torch.ones(1, 3)
    adv, ret = M.gae(r, v, m, gamma=1.0, lam=0.5)
    d2 = 1.0 - 0.7  # last step: no next value
    d1 = 0.0 + 0.7 - 0.6
    d0 = 0.0 + 0.6 - 0.5
    a2, a1 = d2, d1 + 0.5 * d2
    a0 = d0 + 0.5 * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2])
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.6, a2 + 0.7])


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value():
    r, v, m = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.1, 0.2, 0.3]]), torch.ones(1, 3)
    adv, ret = M.gae(r, v, m, gamma=0.5, lam=1.0)
    assert ret[0].tolist() == pytest.approx([1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0])
    assert adv[0].tolist() == pytest.approx([2.75 - 0.1, 3.5 - 0.2, 3.0 - 0.3])


def test_gae_ignores_tokens_after_the_end():
    # two rows in one batch, the first one step shorter: what lies past its end must not leak in
    r = torch.tensor([[0.0, 1.0, 5.0], [0.0, 1.0, 5.0]])
    v = torch.tensor([[0.2, 0.4, 9.0], [0.2, 0.4, 9.0]])
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv, ret = M.gae(r, v, m, gamma=0.9, lam=1.0)
    # row 0, step 1 is the last real step: A1 = 1 - 0.4; A0 = 0 + 0.9 * 0.4 - 0.2 + 0.9 * A1
    assert adv[0].tolist() == pytest.approx([0.9 * 0.4 - 0.2 + 0.9 * 0.6, 0.6, 0.0])
    assert ret[0, 2].item() == 0.0
    # row 1 runs to the end: A2 = 5 - 9, A1 = 1 + 0.9 * 9 - 0.4 + 0.9 * A2
    a2 = 5.0 - 9.0
    a1 = 1 + 0.9 * 9 - 0.4 + 0.9 * a2
    assert adv[1].tolist() == pytest.approx([0.9 * 0.4 - 0.2 + 0.9 * a1, a1, a2])


def test_masked_whiten_uses_only_masked_elements():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = M.masked_whiten(x, m)
    assert w[0, :3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-4)  # std of 1,2,3 (unbiased) = 1
    assert w[0, 3].item() == 0.0
    assert M.masked_mean(x, m).item() == pytest.approx(2.0)
    assert M.masked_var(x, m).item() == pytest.approx(1.0)
    # shift_mean=False rescales but keeps the mean (for rewards, whose sign carries meaning)
    assert M.masked_whiten(x, m, shift_mean=False)[0, :3].tolist() == pytest.approx([1.0, 2.0, 3.0], abs=1e-4)


def test_kl_estimators():
    lp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    assert M.kl_per_token(lp, ref, "k1").tolist() == pytest.approx([0.5, -1.0])
    # k3 = (q/p - 1) - log(q/p), log(q/p) = ref - lp
    expected = [math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0]
    assert M.kl_per_token(lp, ref, "k3").tolist() == pytest.approx(expected)
    assert all(x >= 0 for x in M.kl_per_token(torch.randn(100), torch.randn(100), "k3").tolist())
    with pytest.raises(ValueError):
        M.kl_per_token(lp, ref, "k2")


def test_kl_estimators_average_to_the_true_kl():
    # p = (0.7, 0.2, 0.1), q = (0.4, 0.4, 0.2): both estimators are unbiased for KL(p || q)
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.4, 0.4, 0.2])
    true_kl = (p * (p / q).log()).sum().item()
    x = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    for est in ("k1", "k3"):
        assert M.kl_per_token(p.log()[x], q.log()[x], est).mean().item() == pytest.approx(true_kl, abs=0.005)


def test_clipped_policy_loss():
    lp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1 (old log-probs 0)
    old = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, -1.0, 1.0]])
    m = torch.ones(1, 3)
    loss, clipfrac, approx_kl = M.policy_loss(lp, old, adv, m, cliprange=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(0.5, 0.8) = 0.8 (clipped); token 2: -1.1
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 1.1) / 3)
    assert clipfrac.item() == pytest.approx(2 / 3)
    assert approx_kl.item() == pytest.approx(0.5 * sum(math.log(r) ** 2 for r in (1.5, 0.5, 1.1)) / 3)


@pytest.mark.parametrize("ratio, adv, loss, clipped", [
    (1.5, 1.0, -1.2, True),    # good action pushed past 1 + eps: no more credit, no gradient
    (0.5, 1.0, -0.5, False),   # good action made rarer: the unclipped (worse) term stays, gradient flows
    (0.5, -1.0, 0.8, True),    # bad action pushed below 1 - eps: clipped
    (1.5, -1.0, 1.5, False),   # bad action made likelier: the full penalty stays
    (1.1, 1.0, -1.1, False),   # inside the trust region: plain surrogate
])
def test_which_tokens_the_policy_loss_clips(ratio, adv, loss, clipped):
    # every token in one batch; the mask picks out the one under test
    ratios = torch.tensor([[1.5, 0.5, 0.5, 1.5, 1.1]])
    advs = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1.0]])
    i = [(1.5, 1.0), (0.5, 1.0), (0.5, -1.0), (1.5, -1.0), (1.1, 1.0)].index((ratio, adv))
    mask = torch.zeros(1, 5)
    mask[0, i] = 1.0
    lp = ratios.log().requires_grad_()
    got, clipfrac, _ = M.policy_loss(lp, torch.zeros(1, 5), advs, mask, cliprange=0.2)
    assert got.item() == pytest.approx(loss)
    assert clipfrac.item() == float(clipped)
    got.backward()
    assert (lp.grad[0, i].item() == 0.0) == clipped  # clipped tokens give no gradient


def test_clipped_value_loss():
    # token 0: V moved away from the return: unclipped (1 - 0)^2 = 1 > clipped (0.2 - 0)^2, not clipped
    # token 1: V moved 0.9 towards the return 1.0: unclipped 0.01 < clipped (0.2 - 1)^2 = 0.64, clipped
    # token 2: V inside the range: both (0.1 - 0.5)^2 = 0.16
    values, old = torch.tensor([[1.0, 0.9, 0.1]]), torch.zeros(1, 3)
    ret = torch.tensor([[0.0, 1.0, 0.5]])
    v = values.clone().requires_grad_()
    loss, clipfrac = M.value_loss(v, old, ret, torch.ones(1, 3), cliprange_value=0.2)
    assert loss.item() == pytest.approx(0.5 * (1.0 + 0.64 + 0.16) / 3)
    assert clipfrac.item() == pytest.approx(1 / 3)
    loss.backward()
    assert v.grad[0].tolist() == pytest.approx([1.0 / 3, 0.0, (0.1 - 0.5) / 3])  # clipped token: no gradient


def test_eos_penalty_and_token_rewards():
    scores = M.eos_penalty(torch.tensor([1.0, 1.0]), torch.tensor([True, False]), 0.5)
    assert scores.tolist() == [1.0, 0.5]
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    kl = torch.ones(2, 3)
    r = M.token_rewards(scores, kl, m, kl_coef=0.1)
    # KL penalty on every response token, the score on the last one, nothing past the end
    assert r[0].tolist() == pytest.approx([-0.1, -0.1 + 1.0, 0.0])
    assert r[1].tolist() == pytest.approx([-0.1, -0.1, -0.1 + 0.5])


def test_entropy_from_logits():
    uniform = torch.zeros(1, 1, 4)
    certain = torch.tensor([[[100.0, 0.0, 0.0, 0.0]]])
    assert M.entropy_from_logits(uniform).item() == pytest.approx(math.log(4))
    assert M.entropy_from_logits(certain).item() == pytest.approx(0.0, abs=1e-6)


def test_adaptive_kl_controller_moves_towards_target():
    ctl = M.AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert ctl.update(12.0, n_steps=10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # error clipped to 0.2
    ctl = M.AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert ctl.update(3.0, n_steps=10) == pytest.approx(0.1 * (1 - 0.2 * 10 / 100))
    ctl = M.AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert ctl.update(6.6, n_steps=10) == pytest.approx(0.1 * (1 + 0.1 * 10 / 100))  # error 0.1, unclipped
    assert ctl.update(6.0 * 1.0, n_steps=10) == pytest.approx(0.1 * 1.01)  # on target: unchanged
