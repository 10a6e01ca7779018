"""Soft-label preference losses: each pair carries its own ``p_chosen`` and ``weight``.

Both losses are the binary cross-entropy between a pair's label ``p`` (the
probability that ``chosen`` is better: 1.0 for a hard human label, the AI
labeler's option probability for an AI label) and the model's probability
``sigmoid(z)`` that ``chosen`` wins, where ``z`` is a reward difference::

    loss_i = -p_i * log sigmoid(z_i) - (1 - p_i) * log sigmoid(-z_i)
           = -log sigmoid(z_i) + (1 - p_i) * z_i          (same value, used as a check)
    loss   = mean_i(weight_i * loss_i)

With ``p = 1`` and ``weight = 1`` this is the usual Bradley-Terry / DPO loss.
For ``p = 0.5`` the minimum is at ``z = 0``: an undecided label pulls the two
answers' rewards together instead of apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _soft_bce(z: torch.Tensor, p_chosen: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """mean(weight * BCE(sigmoid(z), p)), computed stably with logsigmoid. Shapes: all ``[B]``."""
    import torch.nn.functional as F

    p = p_chosen.to(z.dtype)
    per_pair = -(p * F.logsigmoid(z) + (1.0 - p) * F.logsigmoid(-z))  # [B]
    if weight is not None:
        per_pair = per_pair * weight.to(z.dtype)  # [B]
    return per_pair.mean()  # []


def soft_bradley_terry_loss(
    rewards_chosen: torch.Tensor,
    rewards_rejected: torch.Tensor,
    p_chosen: torch.Tensor,
    weight: torch.Tensor | None = None,
    margin: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Preference-model loss: BCE of ``sigmoid(r_chosen - r_rejected - margin)`` against ``p_chosen``.

    Shapes: ``rewards_chosen``, ``rewards_rejected``, ``p_chosen``, ``weight``,
    ``margin``: ``[B]`` (``margin`` may be a float); returns a scalar.

    Worked example, one pair with rewards 2 and 0 (``z = 2``):

    * ``p = 1``:   ``-log sigmoid(2) = log(1 + e^-2) = 0.126928``
    * ``p = 0.5``: ``0.126928 + 0.5 * 2 = 1.126928``
    * ``p = 1``, margin 1 (``z = 1``): ``log(1 + e^-1) = 0.313262``
    * both pairs together, weights 1 and 0: ``(0.126928 * 1 + 1.126928 * 0) / 2 = 0.063464``

    >>> import torch
    >>> r_c, r_r = torch.tensor([2.0, 2.0]), torch.tensor([0.0, 0.0])
    >>> soft_bradley_terry_loss(r_c, r_r, torch.tensor([1.0, 1.0])).item()  # doctest: +ELLIPSIS
    0.12692...
    >>> round(soft_bradley_terry_loss(r_c, r_r, torch.tensor([0.5, 0.5])).item(), 6)
    1.126928
    >>> round(soft_bradley_terry_loss(r_c, r_r, torch.tensor([1.0, 1.0]), margin=1.0).item(), 6)
    0.313262
    >>> round(soft_bradley_terry_loss(r_c, r_r, torch.tensor([1.0, 0.5]), torch.tensor([1.0, 0.0])).item(), 6)
    0.063464
    """
    z = rewards_chosen - rewards_rejected  # [B]
    if margin is not None:
        z = z - margin  # [B]
    return _soft_bce(z, p_chosen, weight)


def soft_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    p_chosen: torch.Tensor,
    beta: float,
    weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Conservative DPO with each pair's own label: ``-p·logσ(β·h) - (1-p)·logσ(-β·h)``.

    ``h = (log π(chosen) - log π_ref(chosen)) - (log π(rejected) - log π_ref(rejected))``,
    each a sum of token log-probabilities over the answer. Shapes: all inputs
    ``[B]``; returns ``(loss [], h [B])`` (``β·h`` is the implicit reward margin).

    Worked example: policy log-probs -10 (chosen) and -12 (rejected), reference
    -11 for both, so ``h = (-10 + 11) - (-12 + 11) = 2``; with ``β = 0.5``, ``β·h = 1``:

    * ``p = 1``:    ``log(1 + e^-1) = 0.313262`` (TRL's ``sigmoid`` DPO loss)
    * ``p = 0.75``: ``0.313262 + 0.25 * 1 = 0.563262``
    * ``p = 0.5``:  ``0.313262 + 0.5 * 1 = 0.813262``

    >>> import torch
    >>> t = lambda *v: torch.tensor(v)
    >>> loss, h = soft_dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), t(0.75), beta=0.5)
    >>> round(loss.item(), 6), h.tolist()
    (0.563262, [2.0])
    >>> round(soft_dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), t(1.0), beta=0.5)[0].item(), 6)
    0.313262
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # [B]
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # [B]
    h = chosen_logratios - rejected_logratios  # [B]
    return _soft_bce(beta * h, p_chosen, weight), h
