"""Soft-label losses against values worked by hand, TRL's hard-label losses, and properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cai.train.losses import soft_bradley_terry_loss, soft_dpo_loss


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_soft_bradley_terry_by_hand():
    # z = 2 - 0 = 2; log(1 + e^-2) = 0.12692801104297263
    hard = math.log1p(math.exp(-2.0))
    assert soft_bradley_terry_loss(t(2.0), t(0.0), t(1.0)).item() == pytest.approx(hard, abs=1e-12)
    # p = 0.7: -(0.7 log s(2) + 0.3 log s(-2)) = 0.7 * 0.126928 + 0.3 * 2.126928 = 0.726928
    assert soft_bradley_terry_loss(t(2.0), t(0.0), t(0.7)).item() == pytest.approx(0.726928011, abs=1e-9)
    # margin 0.5: z = 1.5; log(1 + e^-1.5) = 0.201413
    assert soft_bradley_terry_loss(t(2.0), t(0.0), t(1.0), margin=t(0.5)).item() == pytest.approx(
        0.2014132779827524, abs=1e-12)
    # two pairs: z = 2 (p = 1, weight 2) and z = -1 (p = 0, weight 1):
    # (2 * 0.126928 + 1 * log(1 + e^-1)) / 2 = (0.253856 + 0.313262) / 2 = 0.283559
    loss = soft_bradley_terry_loss(t(2.0, 0.0), t(0.0, 1.0), t(1.0, 0.0), weight=t(2.0, 1.0))
    assert loss.item() == pytest.approx((2 * hard + math.log1p(math.exp(-1.0))) / 2, abs=1e-12)


def test_soft_bradley_terry_hard_label_matches_trl_reward_loss():
    r_c, r_r = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    trl_loss = -F.logsigmoid(r_c - r_r).mean()  # RewardTrainer.compute_loss without margin
    assert (soft_bradley_terry_loss(r_c, r_r, torch.ones(16)).item()
            == pytest.approx(trl_loss.item(), abs=1e-12))


def test_soft_dpo_by_hand():
    # h = (-10 + 11) - (-12 + 11) = 2, beta = 0.5 -> beta*h = 1
    loss, h = soft_dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), t(1.0), beta=0.5)
    assert h.tolist() == [2.0]
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-12)  # 0.313262
    loss, _ = soft_dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), t(0.75), beta=0.5)
    assert loss.item() == pytest.approx(0.3132616875182228 + 0.25, abs=1e-12)  # 0.563262
    # a pair the policy ranks the wrong way (h = -2), p = 0.9, weight 0.5:
    # 0.5 * (-(0.9 log s(-1) + 0.1 log s(1))) = 0.5 * (0.9 * 1.313262 + 0.1 * 0.313262) = 0.606631
    loss, _ = soft_dpo_loss(t(-12.0), t(-10.0), t(-11.0), t(-11.0), t(0.9), beta=0.5, weight=t(0.5))
    assert (loss.item()
            == pytest.approx(0.5 * (0.9 * 1.3132616875182228 + 0.1 * 0.3132616875182228), abs=1e-12))


def test_soft_dpo_hard_label_is_trl_sigmoid_and_p_half_pulls_margin_to_zero():
    pc, pr, rc, rr = (torch.randn(8, dtype=torch.float64) for _ in range(4))
    beta = 0.1
    trl_sigmoid = -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()
    assert (soft_dpo_loss(pc, pr, rc, rr, torch.ones(8), beta)[0].item()
            == pytest.approx(trl_sigmoid.item(), abs=1e-12))
    # with p = 0.5 the gradient pushes h toward 0 from either side
    pol = t(-10.0, -12.0).requires_grad_()
    loss, h = soft_dpo_loss(pol[:1], pol[1:], t(-11.0), t(-11.0), t(0.5), beta=1.0)
    loss.backward()
    assert h.item() > 0 and pol.grad[0] > 0 and pol.grad[1] < 0  # descent lowers chosen, raises rejected


@settings(max_examples=60, deadline=None)
@given(z=st.floats(-30, 30), p=st.floats(0, 1), w=st.floats(0, 5))
def test_soft_bce_properties(z, p, w):
    """loss >= w * H(p), with equality at z = logit(p); equal to -logσ(z) + (1-p)z."""
    loss = soft_bradley_terry_loss(t(z), t(0.0), t(p), weight=t(w)).item()
    entropy = -sum(q * math.log(q) for q in (p, 1 - p) if q > 0)
    assert loss >= w * entropy - 1e-9
    assert loss == pytest.approx(w * (math.log1p(math.exp(-abs(z))) + max(-z, 0.0) + (1 - p) * z), abs=1e-7)
    if 0 < p < 1:
        at_min = soft_bradley_terry_loss(t(math.log(p / (1 - p))), t(0.0), t(p), weight=t(w)).item()
        assert at_min == pytest.approx(w * entropy, abs=1e-9)
