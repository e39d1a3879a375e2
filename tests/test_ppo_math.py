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


def test_gae_ignores_tokens_after_the_end():
    r = torch.tensor([[0.0, 1.0, 5.0]])
    v = torch.tensor([[0.2, 0.4, 9.0]])
    m = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = M.gae(r, v, m, gamma=0.9, lam=1.0)
    # step 1 is the last real step: A1 = 1 - 0.4; A0 = 0 + 0.9 * 0.4 - 0.2 + 0.9 * A1
    assert adv[0].tolist() == pytest.approx([0.9 * 0.4 - 0.2 + 0.9 * 0.6, 0.6, 0.0])
    assert ret[0, 2].item() == 0.0


def test_masked_whiten_uses_only_masked_elements():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = M.masked_whiten(x, m)
    assert w[0, :3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-4)  # std of 1,2,3 (unbiased) = 1
    assert w[0, 3].item() == 0.0
    assert M.masked_mean(x, m).item() == pytest.approx(2.0)


def test_kl_estimators():
    lp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    assert M.kl_per_token(lp, ref, "k1").tolist() == pytest.approx([0.5, -1.0])
    # k3 = (q/p - 1) - log(q/p), log(q/p) = ref - lp
    expected = [math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0]
    assert M.kl_per_token(lp, ref, "k3").tolist() == pytest.approx(expected)
    assert all(x >= 0 for x in M.kl_per_token(torch.randn(100), torch.randn(100), "k3").tolist())


def test_clipped_policy_loss():
    lp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1 (old log-probs 0)
    old = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, -1.0, 1.0]])
    m = torch.ones(1, 3)
    loss, clipfrac, _ = M.policy_loss(lp, old, adv, m, cliprange=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(0.5, 0.8) = 0.8 (clipped); token 2: -1.1
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 1.1) / 3)
    assert clipfrac.item() == pytest.approx(2 / 3)


def test_clipped_value_loss():
    values, old, ret = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    loss, clipfrac = M.value_loss(values, old, ret, torch.ones(1, 2), cliprange_value=0.2)
    # token 0: unclipped (1-0)^2 = 1, clipped (0.2-0)^2 = 0.04 -> 1; token 1: (0-1)^2 = 1 both
    assert loss.item() == pytest.approx(0.5 * (1 + 1) / 2)
    assert clipfrac.item() == 0.0


def test_eos_penalty_and_token_rewards():
    scores = M.eos_penalty(torch.tensor([1.0, 1.0]), torch.tensor([True, False]), 0.5)
    assert scores.tolist() == [1.0, 0.5]
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    kl = torch.ones(2, 3)
    r = M.token_rewards(scores, kl, m, kl_coef=0.1)
    assert r[0].tolist() == pytest.approx([-0.1, -0.1 + 1.0, 0.0])
    assert r[1].tolist() == pytest.approx([-0.1, -0.1, -0.1 + 0.5])


def test_adaptive_kl_controller_moves_towards_target():
    ctl = M.AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert ctl.update(12.0, n_steps=10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # error clipped to 0.2
    ctl = M.AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert ctl.update(3.0, n_steps=10) == pytest.approx(0.1 * (1 - 0.2 * 10 / 100))
