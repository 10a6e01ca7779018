"""PPO's tensor math, each piece a small pure function with a worked example.

Shapes: ``B`` answers (episodes) in a batch, ``T`` response tokens (right-padded),
``V`` vocabulary size. ``mask [B, T]`` is 1 on a response's real tokens (up to
and including its EOS) and 0 after; every masked function ignores the 0s.

The pieces, in the order a PPO step uses them (Ziegler et al. 2019; Stiennon et
al. 2020; Huang et al. 2024, "The N+ implementation details of RLHF with PPO"):

1. :func:`response_mask`: real tokens up to the first EOS, and whether there was one;
2. :func:`kl_penalty_rewards`: per-token reward ``-kl_coef * KL_t``, plus the
   reward model's score on the last real token;
3. :func:`masked_whiten`: optional reward whitening, always advantage whitening;
4. :func:`gae`: generalised advantage estimation ``(gamma, lam)`` and returns;
5. :func:`policy_loss` (clipped ratio objective, clip fraction, approx KL),
   :func:`value_loss` (clipped value loss), :func:`entropy_from_logits`;
6. :class:`AdaptiveKLController` / :class:`FixedKLController`: the KL coefficient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


# ------------------------------------------------------------------- masked stats
def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` is 1 (over all entries, or along ``dim``).

    x, mask: [B, T] -> scalar (or [B] with dim=1).

    >>> masked_mean(torch.tensor([[1., 2., 9.]]), torch.tensor([[1, 1, 0]]))
    tensor(1.5000)
    """
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` where ``mask`` is 1; Bessel-corrected (n - 1) when ``unbiased``.

    >>> masked_var(torch.tensor([[1., 3., 5., 100.]]), torch.tensor([[1, 1, 1, 0]]))
    tensor(4.)
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        var = var * n / (n - 1).clamp(min=1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit variance over its masked entries (and zero mean when ``shift_mean``); 0 where
    masked.

    ``shift_mean=False`` keeps the mean (reward whitening: the sign of a reward
    still means something). x, mask: [B, T] -> [B, T].

    Worked example: [1, 3, 5] has mean 3 and unbiased std 2, so it whitens to
    [-1, 0, 1], or [2, 3, 4] keeping the mean; the padded 100 becomes 0.

    >>> x, m = torch.tensor([[1., 3., 5., 100.]]), torch.tensor([[1, 1, 1, 0]])
    >>> masked_whiten(x, m)
    tensor([[-1.,  0.,  1.,  0.]])
    >>> masked_whiten(x, m, shift_mean=False)
    tensor([[2., 3., 4., 0.]])
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


# ---------------------------------------------------------------- responses and EOS
def response_mask(responses: torch.Tensor,
                  eos_ids: list[int] | tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Which response tokens count: those up to and including the first EOS (the policy learns to stop).

    responses: [B, T] long -> (mask [B, T] long, has_eos [B] bool). A response
    without EOS (truncated at the length limit) keeps all T tokens and
    ``has_eos`` False, so the trainer can penalise it.

    >>> mask, has_eos = response_mask(torch.tensor([[5, 7, 2, 9, 9], [5, 6, 7, 8, 9]]), [2])
    >>> mask.tolist(), has_eos.tolist()
    ([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], [True, False])
    """
    is_eos = torch.isin(responses, torch.tensor(list(eos_ids), device=responses.device))  # [B, T]
    has_eos = is_eos.any(dim=1)  # [B]
    # eos_before[t]: an EOS occurred strictly before t -> token t comes after the answer ended.
    eos_before = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
    return (~eos_before).long(), has_eos


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token (0 for an empty row). mask: [B, T] -> [B] long.

    >>> last_index(torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])).tolist()
    [2, 0, 3]
    """
    return (mask.long().sum(dim=1) - 1).clamp(min=0)


# ---------------------------------------------------------------- reward shaping
def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL(policy || reference) estimate from the sampled tokens' log-probs.

    ``k1`` is ``log pi - log ref`` (unbiased, can be negative per token); ``k3`` is
    ``(r - 1) - log r`` with ``r = ref / pi`` (unbiased, never negative; Schulman 2020).
    logprobs, ref_logprobs: [B, T] -> [B, T].

    >>> per_token_kl(torch.tensor([[-1.0]]), torch.tensor([[-1.5]]))
    tensor([[0.5000]])
    >>> per_token_kl(torch.tensor([[-1.0]]), torch.tensor([[-1.0]]), "k3")
    tensor([[0.]])
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r} (use k1 or k3)")


def kl_penalty_rewards(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    scores: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    estimator: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: ``-kl_coef * KL_t`` on every real token, plus the score on the last one.

    logprobs, ref_logprobs, mask: [B, T]; scores: [B] -> (rewards [B, T], kl [B, T]),
    both 0 after EOS.

    Worked example: KL per token is [0.5, 0, -1] on the three real tokens (the
    fourth comes after EOS), kl_coef 0.1 gives [-0.05, 0, 0.1], and the score 2
    lands on the last real token: [-0.05, 0, 2.1, 0].

    >>> rewards, kl = kl_penalty_rewards(torch.tensor([[-1., -2., -3., -4.]]),
    ...     torch.tensor([[-1.5, -2., -2., -9.]]), torch.tensor([2.]), torch.tensor([[1, 1, 1, 0]]), 0.1)
    >>> [round(v, 4) + 0.0 for v in rewards[0].tolist()]  # (+ 0.0 prints -0.0 as 0.0)
    [-0.05, 0.0, 2.1, 0.0]
    >>> kl.tolist()
    [[0.5, 0.0, -1.0, 0.0]]
    """
    m = mask.to(logprobs.dtype)
    kl = per_token_kl(logprobs, ref_logprobs, estimator) * m  # [B, T]
    rewards = -kl_coef * kl  # [B, T]
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last_index(mask)] += scores.to(rewards.dtype)
    return rewards * m, kl


# --------------------------------------------------------------------------- GAE
def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each response; the step after the last real token is terminal.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``,
    with ``V`` and ``A`` zero past the end. rewards, values, mask: [B, T] ->
    (advantages [B, T], returns = advantages + values [B, T]), 0 where masked.

    Worked example (gamma 1, lam 0.5, values [.1 .2 .3 .4 .5], reward 1 at the end):
    deltas are [.1 .1 .1 .1 .5], so A_4 = .5, A_3 = .1 + .5 * .5 = .35,
    A_2 = .275, A_1 = .2375, A_0 = .21875.

    >>> adv, ret = gae(torch.tensor([[0., 0., 0., 0., 1.]]), torch.tensor([[.1, .2, .3, .4, .5]]),
    ...                torch.ones(1, 5), gamma=1.0, lam=0.5)
    >>> adv
    tensor([[0.2188, 0.2375, 0.2750, 0.3500, 0.5000]])
    >>> ret
    tensor([[0.3187, 0.4375, 0.5750, 0.7500, 1.0000]])
    """
    m = mask.to(values.dtype)
    rewards, values = rewards * m, values * m
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])  # [B]
    next_value = torch.zeros_like(values[:, 0])  # [B]
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = (delta + gamma * lam * next_adv) * m[:, t]
        advantages[:, t] = adv_t
        # A masked step resets the recursion: nothing flows back across it.
        next_adv, next_value = adv_t, values[:, t]
    return advantages, (advantages + values) * m


# ------------------------------------------------------------------------- losses
@dataclass(frozen=True)
class PolicyLoss:
    loss: torch.Tensor  # scalar, to minimise
    clipfrac: torch.Tensor  # scalar: fraction of tokens where the clipped term was the one used
    approx_kl: torch.Tensor  # scalar: 0.5 * mean((log ratio)^2), how far this epoch moved from the rollout


def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> PolicyLoss:
    """PPO's clipped surrogate: ``mean(max(-A * r, -A * clip(r, 1 - eps, 1 + eps)))`` with ``r = exp(new -
    old)``.

    new_logprobs, old_logprobs, advantages, mask: [B, T] -> :class:`PolicyLoss`.

    Worked example (eps 0.2): A = +1, r = 1.5 gives terms -1.5 and -1.2, the max
    -1.2 is the clipped one (no gain from moving further); A = -1, r = 1.5
    gives 1.5 and 1.2, the max 1.5 is unclipped (a bad move is paid in full).
    Mean loss (-1.2 + 1.5) / 2 = 0.15, clip fraction 1/2.

    >>> old = torch.zeros(1, 2)
    >>> new = torch.log(torch.tensor([[1.5, 1.5]]))
    >>> out = policy_loss(new, old, torch.tensor([[1., -1.]]), torch.ones(1, 2), 0.2)
    >>> round(out.loss.item(), 4), out.clipfrac.item()
    (0.15, 0.5)
    """
    log_ratio = new_logprobs - old_logprobs  # [B, T]
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).to(new_logprobs.dtype), mask)
        approx_kl = 0.5 * masked_mean(log_ratio**2, mask)
    return PolicyLoss(loss, clipfrac, approx_kl)


def value_loss(
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss ``0.5 * mean(max((V - R)^2, (clip(V, V_old +- eps) - R)^2))`` and its clip fraction.

    new_values, old_values, returns, mask: [B, T] -> (loss scalar, clipfrac scalar).

    Worked example (eps 0.2): V_old = 0, R = 1. V = 0.5 is clipped to 0.2:
    max(0.25, 0.64) = 0.64 (clipped term used). V = -0.1 stays: max(1.21, 1.21).
    Loss 0.5 * (0.64 + 1.21) / 2 = 0.4625, clip fraction 1/2.

    >>> loss, frac = value_loss(torch.tensor([[0.5, -0.1]]), torch.zeros(1, 2), torch.ones(1, 2),
    ...                         torch.ones(1, 2), 0.2)
    >>> round(loss.item(), 4), frac.item()
    (0.4625, 0.5)
    """
    clipped_values = old_values + torch.clamp(new_values - old_values, -cliprange_value, cliprange_value)
    loss_unclipped = (new_values - returns) ** 2  # [B, T]
    loss_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((loss_clipped > loss_unclipped).to(new_values.dtype), mask)
    return loss, clipfrac


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax of each position's logits: ``logsumexp(z) - sum(softmax(z) * z)``.

    logits: [B, T, V] -> [B, T]. Uniform over 4 tokens: log 4 = 1.3863.

    >>> entropy_from_logits(torch.zeros(1, 1, 4))
    tensor([[1.3863]])
    """
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of each token under ``softmax(logits / temperature)``, in fp32.

    logits: [B, T, V]; tokens: [B, T] -> [B, T]. The same temperature the
    rollout sampled with, so the ratio is between the sampling distributions.

    >>> token_logprobs(torch.log(torch.tensor([[[0.25, 0.75]]])), torch.tensor([[1]]))
    tensor([[-0.2877]])
    """
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


# ------------------------------------------------------------------ KL controllers
class FixedKLController:
    """A constant KL coefficient.

    >>> c = FixedKLController(0.05); c.update(100.0, 8); c.value
    0.05
    """

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        return None


class AdaptiveKLController:
    """Ziegler et al. (2019): ``kl_coef <- kl_coef * (1 + clip(KL / target - 1, -0.2, 0.2) * n_steps /
    horizon)``.

    ``current_kl`` is the batch's mean per-answer KL (summed over tokens),
    ``n_steps`` the number of answers in the batch. Too much KL raises the
    coefficient, too little lowers it, by at most 20% per ``horizon`` answers.

    Worked example: coef 0.1, target 6, horizon 100, a batch of 10 answers.
    KL 12: error clipped to 0.2, coef 0.1 * (1 + 0.2 * 10/100) = 0.102.
    KL 5.4: error -0.1, coef 0.102 * (1 - 0.1 * 0.1) = 0.10098.

    >>> c = AdaptiveKLController(0.1, target=6.0, horizon=100)
    >>> c.update(12.0, 10); round(c.value, 6)
    0.102
    >>> c.update(5.4, 10); round(c.value, 6)
    0.10098
    """

    def __init__(self, kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError("the adaptive KL controller needs target > 0 and horizon > 0")
        self.value = float(kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
