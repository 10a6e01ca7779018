"""PPO's tensor math against values worked by hand (cai/train/ppo/math.py)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cai.train.ppo.math import (
    AdaptiveKLController,
    FixedKLController,
    entropy_from_logits,
    gae,
    kl_penalty_rewards,
    last_index,
    masked_mean,
    masked_var,
    masked_whiten,
    per_token_kl,
    policy_loss,
    response_mask,
    token_logprobs,
    value_loss,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# ----------------------------------------------------------------------------- GAE
def test_gae_five_steps_by_hand():
    # gamma 0.9, lam 0.8; rewards [0, 0, 1, 0, 2]; values [1, 0.5, 0.5, 1, 1].
    # deltas: d4 = 2 - 1 = 1
    #         d3 = 0 + 0.9 * 1   - 1   = -0.1
    #         d2 = 1 + 0.9 * 1   - 0.5 = 1.4
    #         d1 = 0 + 0.9 * 0.5 - 0.5 = -0.05
    #         d0 = 0 + 0.9 * 0.5 - 1   = -0.55
    # A4 = 1; A3 = -0.1 + 0.72 * 1 = 0.62; A2 = 1.4 + 0.72 * 0.62 = 1.8464
    # A1 = -0.05 + 0.72 * 1.8464 = 1.279408; A0 = -0.55 + 0.72 * 1.279408 = 0.37117376
    adv, ret = gae(t([0, 0, 1, 0, 2]), t([1, 0.5, 0.5, 1, 1]), torch.ones(1, 5), gamma=0.9, lam=0.8)
    expected = [0.37117376, 1.279408, 1.8464, 0.62, 1.0]
    assert adv[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert ret[0].tolist() == pytest.approx([a + v for a, v in zip(expected, [1, 0.5, 0.5, 1, 1])], abs=1e-6)


def test_gae_gamma1_lam05_docstring_example():
    adv, ret = gae(t([0, 0, 0, 0, 1]), t([0.1, 0.2, 0.3, 0.4, 0.5]), torch.ones(1, 5), gamma=1.0, lam=0.5)
    assert adv[0].tolist() == pytest.approx([0.21875, 0.2375, 0.275, 0.35, 0.5])
    assert ret[0].tolist() == pytest.approx([0.31875, 0.4375, 0.575, 0.75, 1.0])


def test_gae_masks_tokens_after_the_end():
    # Row 2 ends after 3 tokens: its last real step is terminal and whatever sits after it is ignored.
    rewards = t([0, 0, 1, 0, 0], [0, 0, 1, 7, 7])
    values = t([0.2, 0.4, 0.6, 0.0, 0.0], [0.2, 0.4, 0.6, 9, 9])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # lam = gamma = 1: A_t = (sum of rewards from t) - V_t = 1 - V_t
    assert adv[0].tolist() == pytest.approx([0.8, 0.6, 0.4, 0.0, 0.0])
    assert adv[1].tolist() == pytest.approx(adv[0].tolist())
    assert ret[1].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.0, 0.0])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=8), st.data())
def test_gae_with_lam1_gamma1_is_monte_carlo(rewards, data):
    values = data.draw(st.lists(st.floats(-5, 5), min_size=len(rewards), max_size=len(rewards)))
    adv, ret = gae(t(rewards), t(values), torch.ones(1, len(rewards)), gamma=1.0, lam=1.0)
    for i in range(len(rewards)):
        assert adv[0, i].item() == pytest.approx(sum(rewards[i:]) - values[i], abs=1e-4)
        assert ret[0, i].item() == pytest.approx(sum(rewards[i:]), abs=1e-4)


# ----------------------------------------------------------------------- PPO losses
def test_policy_loss_clipped_case_has_no_gradient():
    # A = +1, ratio 1.5 > 1 + 0.2: the clipped term -1.2 wins; moving further gains nothing.
    new = torch.log(t([1.5])).requires_grad_()
    out = policy_loss(new, torch.zeros(1, 1), t([1.0]), torch.ones(1, 1), 0.2)
    assert out.loss.item() == pytest.approx(-1.2)
    assert out.clipfrac.item() == 1.0
    out.loss.backward()
    assert new.grad.abs().sum().item() == 0.0


def test_policy_loss_unclipped_case():
    # A = +2, ratio 1.1 inside [0.8, 1.2]: loss -A * r = -2.2 and d loss / d log r = -A * r = -2.2.
    new = torch.log(t([1.1])).requires_grad_()
    out = policy_loss(new, torch.zeros(1, 1), t([2.0]), torch.ones(1, 1), 0.2)
    assert out.loss.item() == pytest.approx(-2.2)
    assert out.clipfrac.item() == 0.0
    assert out.approx_kl.item() == pytest.approx(0.5 * math.log(1.1) ** 2)
    out.loss.backward()
    assert new.grad.item() == pytest.approx(-2.2)


def test_policy_loss_negative_advantage_pays_in_full_and_masks():
    # A = -1, ratio 1.5: terms 1.5 (unclipped) and 1.2 (clipped); the max 1.5 is kept, not clipped.
    # The masked third token (huge ratio, huge advantage) must not count.
    new = torch.log(t([1.5, 0.5, 50.0]))
    out = policy_loss(new, torch.zeros(1, 3), t([-1.0, 1.0, 100.0]), torch.tensor([[1, 1, 0]]), 0.2)
    # token 2: A = +1, ratio 0.5: terms -0.5 and -0.8, max -0.5 (unclipped)
    assert out.loss.item() == pytest.approx((1.5 - 0.5) / 2)
    assert out.clipfrac.item() == 0.0


def test_value_loss_by_hand():
    # V_old = 0, R = 1, eps 0.2: V = 0.5 clips to 0.2 -> max(0.25, 0.64) = 0.64 (clipped);
    # V = -0.1 -> 1.21 both ways; V = 0.9 masked out.
    loss, frac = value_loss(t([0.5, -0.1, 0.9]), torch.zeros(1, 3), torch.ones(1, 3),
                            torch.tensor([[1, 1, 0]]), 0.2)
    assert loss.item() == pytest.approx(0.5 * (0.64 + 1.21) / 2)
    assert frac.item() == pytest.approx(0.5)


def test_value_loss_unclipped_when_inside_range():
    # V = 0.1 within 0 +- 0.2 of V_old: 0.5 * (0.1 - 1)^2 = 0.405
    loss, frac = value_loss(t([0.1]), torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), 0.2)
    assert loss.item() == pytest.approx(0.405)
    assert frac.item() == 0.0


# ------------------------------------------------------------------------ whitening
def test_whitening_by_hand_ignores_masked_entries():
    x = t([1.0, 3.0, 100.0], [5.0, -50.0, 7.0])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # masked values 1, 3, 5: mean 3, unbiased var ((4 + 0 + 4) / 2) = 4, std 2
    assert masked_mean(x, mask).item() == pytest.approx(3.0)
    assert masked_var(x, mask).item() == pytest.approx(4.0)
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(8 / 3)
    assert (masked_whiten(x, mask).flatten().tolist()
            == pytest.approx([-1.0, 0.0, 0.0, 1.0, 0.0, 0.0], abs=1e-6))
    kept_mean = masked_whiten(x, mask, shift_mean=False).flatten().tolist()
    assert kept_mean == pytest.approx([2.0, 3.0, 0.0, 4.0, 0.0, 0.0], abs=1e-6)


# ------------------------------------------------------------- EOS and KL shaping
def test_response_mask_keeps_eos_and_drops_what_follows():
    eos = 2
    responses = torch.tensor([[5, 7, 2, 9, 2], [5, 6, 7, 8, 9], [2, 4, 4, 4, 4]])
    mask, has_eos = response_mask(responses, [eos, 99])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert has_eos.tolist() == [True, False, True]
    assert last_index(mask).tolist() == [2, 4, 0]


def test_kl_reward_shaping_with_eos_masking():
    logprobs = t([-1.0, -2.0, -3.0, -4.0], [-1.0, -1.0, -1.0, -1.0])
    ref = t([-1.5, -2.0, -2.0, -9.0], [-2.0, -2.0, -2.0, -2.0])
    # row 1 ends at its EOS (index 2)
    mask, _ = response_mask(torch.tensor([[5, 6, 2, 8], [5, 6, 7, 8]]), [2])
    rewards, kl = kl_penalty_rewards(logprobs, ref, torch.tensor([2.0, -1.0]), mask, kl_coef=0.1)
    # row 0: KL [0.5, 0, -1, (after EOS)] -> -0.1 * KL = [-0.05, 0, 0.1], score 2 on the EOS token
    assert rewards[0].tolist() == pytest.approx([-0.05, 0.0, 2.1, 0.0])
    assert kl[0].tolist() == pytest.approx([0.5, 0.0, -1.0, 0.0])
    # row 1 (no EOS, truncated): KL 1 per token -> -0.1 each, score -1 on the last token
    assert rewards[1].tolist() == pytest.approx([-0.1, -0.1, -0.1, -1.1])


def test_k3_kl_is_nonnegative_and_matches_formula():
    lp, ref = t([-1.0, -2.0, -0.5]), t([-1.5, -1.0, -0.5])
    k3 = per_token_kl(lp, ref, "k3")[0]
    r = torch.exp(ref - lp)[0]
    assert k3.tolist() == pytest.approx(((r - 1) - torch.log(r)).tolist())
    assert (k3 >= 0).all()
    with pytest.raises(ValueError):
        per_token_kl(lp, ref, "k9")


# -------------------------------------------------------------- entropy, logprobs
def test_entropy_uniform_and_peaked():
    ent = entropy_from_logits(torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]]))
    assert ent[0].tolist() == pytest.approx([math.log(4), 0.0], abs=1e-5)


def test_token_logprobs_use_the_temperature():
    logits = torch.tensor([[[2.0, 0.0]]])
    assert (token_logprobs(logits, torch.tensor([[0]]), 2.0).item()
            == pytest.approx(-math.log(1 + math.exp(-1))))


# ------------------------------------------------------------------ KL controllers
def test_adaptive_kl_controller_by_hand():
    c = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    c.update(9.0, 256)  # error 9/6 - 1 = 0.5 -> clipped to 0.2: 0.2 * (1 + 0.2 * 256/10000) = 0.2010240
    assert c.value == pytest.approx(0.201024)
    c.update(5.4, 1000)  # error -0.1: 0.201024 * (1 - 0.1 * 0.1) = 0.19901376
    assert c.value == pytest.approx(0.19901376)
    c.update(0.0, 10000)  # error -1 clipped to -0.2 over a whole horizon: x 0.8
    assert c.value == pytest.approx(0.19901376 * 0.8)
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, target=0.0, horizon=10)


def test_fixed_kl_controller_never_moves():
    c = FixedKLController(0.05)
    c.update(1e6, 10**6)
    assert c.value == 0.05
