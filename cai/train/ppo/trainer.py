"""Our own PPO trainer (TRL removed its ``PPOTrainer``), built on ``accelerate``.

Each step (:meth:`PPOTrainer.step`):

1. sample one answer per prompt for ``local_batch_size`` prompts per process
   (:func:`~cai.train.ppo.rollout.sample_rollout`: temperature sampling, fp32
   log-probs, reference log-probs and values from one forward pass);
2. score the answers with the reward callable (``(chats, texts) -> floats``,
   :mod:`cai.train.rewards`), minus ``missing_eos_penalty`` for answers that hit
   ``response_length`` without EOS;
3. shape per-token rewards with the KL penalty, optionally whiten them, run GAE
   and whiten the advantages (:mod:`cai.train.ppo.math`);
4. ``num_ppo_epochs`` passes over shuffled mini-batches: clipped policy loss +
   ``vf_coef`` * clipped value loss, gradient accumulation and clipping through
   the ``Accelerator``, each loss checked for NaN/inf (stop and save);
5. update the KL controller with the batch's KL, log one metrics row.

Logged every step (logging and ``metrics.jsonl``): reward, KL, entropy, clip
fraction, value loss, answer length and more (:data:`METRIC_KEYS`), averaged
over processes. A few sampled answers per step go to ``samples.jsonl``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from cai.backends.hf.loading import eos_token_ids
from cai.train.ppo.config import PPOConfig
from cai.train.ppo.math import (
    AdaptiveKLController,
    FixedKLController,
    gae,
    kl_penalty_rewards,
    masked_mean,
    masked_whiten,
    policy_loss,
    value_loss,
)
from cai.train.ppo.rollout import (
    PolicyWithValueHead,
    Rollout,
    forward_response,
    sample_rollout,
)

log = logging.getLogger(__name__)

Chat = list[dict[str, str]]

METRIC_KEYS = (
    "reward", "reward_std", "score", "non_score_reward", "kl", "kl_coef", "entropy", "clipfrac", "approx_kl",
    "policy_loss", "value_loss", "vf_clipfrac", "answer_length", "truncated", "lr",
)


def shape_rewards(rollout: Rollout, raw_scores: torch.Tensor, cfg: PPOConfig,
                  kl_coef: float) -> dict[str, torch.Tensor]:
    """From a scored rollout to what the update trains on: scores, rewards, KL, advantages and returns.

    raw_scores: [B] reward-function outputs. Returns tensors: ``scores [B]``
    (after the missing-EOS penalty), ``rewards [B, T]``, ``kl [B, T]``,
    ``advantages [B, T]`` (whitened), ``returns [B, T]``.
    """
    scores = raw_scores.clone()
    if cfg.missing_eos_penalty is not None:
        scores = torch.where(rollout.has_eos, scores, scores - cfg.missing_eos_penalty)
    rewards, kl = kl_penalty_rewards(rollout.logprobs, rollout.ref_logprobs, scores, rollout.mask, kl_coef,
                                     cfg.kl_estimator)
    if cfg.whiten_rewards:
        rewards = masked_whiten(rewards, rollout.mask, shift_mean=False)
    advantages, returns = gae(rewards, rollout.values, rollout.mask, cfg.gamma, cfg.lam)
    advantages = masked_whiten(advantages, rollout.mask)
    return {"scores": scores, "rewards": rewards, "kl": kl, "advantages": advantages, "returns": returns}


def cpu_process_group() -> bool:
    """Whether this is one of several processes ``accelerate launch`` started on a machine without CUDA.

    Then the Accelerator must be told ``cpu=True`` to join a gloo process group.
    """
    import os

    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and not torch.cuda.is_available()


def linear_schedule(total_updates: int):
    """Multiplier on the learning rate after ``n`` optimizer updates: 1 decaying linearly to 0.

    >>> f = linear_schedule(4); [f(n) for n in range(5)]
    [1.0, 0.75, 0.5, 0.25, 0.0]
    """
    return lambda n: max(0.0, 1.0 - n / max(1, total_updates))


class PPOTrainer:
    """PPO on a causal LM against any reward callable.

    ``policy`` is a causal LM (a peft model when LoRA is on: then the reference
    is the adapter switched off), ``tokenizer`` its tokenizer (a pad token and
    a chat template), ``prompts`` the chats to answer, ``reward`` a
    ``(chats, texts) -> list[float]`` callable. Call :meth:`train`; ``on_step``
    (if given) receives each step's metrics row.
    """

    def __init__(self, cfg: PPOConfig, policy: Any, tokenizer: Any, prompts: Sequence[Chat], reward: Any,
                 *, ref_model: Any = None, accelerator: Any = None):
        import copy

        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from cai.train.ppo.rollout import encode_prompt

        self.cfg = cfg
        self.accelerator = accelerator or Accelerator(
            cpu=cpu_process_group(),
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            mixed_precision="bf16" if cfg.bf16 else "no",
            log_with=None if cfg.report_to in ("none", "", None) else cfg.report_to,
        )
        acc = self.accelerator
        set_seed(cfg.seed + acc.process_index)
        self.tokenizer = tokenizer
        self.reward = reward
        self.prompts = [list(p) for p in prompts]
        if not self.prompts:
            raise ValueError("no prompts to train on")
        encoded = [encode_prompt(tokenizer, p, cfg.max_prompt_length) for p in self.prompts]
        self.prompt_ids = [ids for ids, _ in encoded]
        cut = sum(c for _, c in encoded)
        if cut:
            log.warning("%d prompt(s) longer than max_prompt_length=%d: kept their last tokens", cut,
                        cfg.max_prompt_length)
        self.is_peft = hasattr(policy, "disable_adapter") and hasattr(policy, "peft_config")
        if ref_model is None and not self.is_peft:
            ref_model = copy.deepcopy(policy)
        if ref_model is not None:
            ref_model.requires_grad_(False)
            ref_model.eval().to(acc.device)
        self.ref_model = ref_model
        self.eos_ids = eos_token_ids(policy, tokenizer)
        model = PolicyWithValueHead(policy)
        model.eval()  # no dropout: the rollout and the update see the same function
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, eps=cfg.adam_epsilon,
                                      weight_decay=cfg.weight_decay)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.num_steps = cfg.num_steps(len(self.prompts), acc.num_processes)
        updates = self.num_steps * cfg.num_ppo_epochs * cfg.num_mini_batches
        factor = linear_schedule(updates) if cfg.lr_scheduler_type == "linear" else (lambda n: 1.0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        self.kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.target_kl
                       else FixedKLController(cfg.kl_coef))
        self.step_count = 0
        self.episodes = 0

    # ----------------------------------------------------------------------- pieces
    @property
    def unwrapped(self) -> PolicyWithValueHead:
        return self.accelerator.unwrap_model(self.model)

    def rollout(self, indices: Sequence[int]) -> tuple[Rollout, torch.Tensor]:
        """Sample and score answers to the prompts at ``indices``; returns the rollout and raw scores [B]."""
        cfg = self.cfg
        # the reference and sampling see the policy's precision (bf16: true)
        with self.accelerator.autocast():
            rollout = sample_rollout(
                self.unwrapped, self.ref_model, self.tokenizer, [self.prompt_ids[i] for i in indices],
                response_length=cfg.response_length, temperature=cfg.temperature, eos_ids=self.eos_ids,
                forward_batch_size=cfg.local_rollout_forward_batch_size, device=self.accelerator.device,
            )
        chats = [self.prompts[i] for i in indices]
        scores = [float(s) for s in self.reward(chats, rollout.texts)]
        if len(scores) != len(rollout):
            raise ValueError(f"the reward returned {len(scores)} scores for {len(rollout)} answers")
        return rollout, torch.tensor(scores, dtype=torch.float32, device=self.accelerator.device)

    def all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every process."""
        bad = torch.logical_not(torch.isfinite(loss.detach())).float().reshape(1)
        if self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        return bool(bad.item() == 0)

    def update(self, rollout: Rollout, shaped: dict[str, torch.Tensor]) -> dict[str, float]:
        """``num_ppo_epochs`` passes over shuffled mini-batches; returns mean losses and fractions."""
        from cai.train.common.guards import check_finite

        cfg, acc = self.cfg, self.accelerator
        n, micro = len(rollout), cfg.per_device_train_batch_size
        stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "clipfrac",
                                                         "vf_clipfrac", "approx_kl", "entropy")}
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + self.step_count)
        for _ in range(cfg.num_ppo_epochs):
            order = torch.randperm(n, generator=gen).to(acc.device)
            for start in range(0, n, micro):
                idx = order[start : start + micro]
                with acc.accumulate(self.model):
                    logprobs, values, entropy = forward_response(
                        self.model, rollout.queries[idx], rollout.query_mask[idx], rollout.responses[idx],
                        rollout.mask[idx], cfg.temperature, with_entropy=True,
                    )
                    mask = rollout.mask[idx]
                    pl = policy_loss(logprobs, rollout.logprobs[idx], shaped["advantages"][idx], mask,
                                     cfg.cliprange)
                    vl, vf_clipfrac = value_loss(values, rollout.values[idx], shaped["returns"][idx], mask,
                                                 cfg.cliprange_value)
                    loss = pl.loss + cfg.vf_coef * vl
                    # Every process stops together: one raising alone would leave the others waiting in
                    # backward.
                    check_finite(loss if self.all_finite(loss) else float("nan"), self.step_count + 1)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    if acc.sync_gradients:
                        self.scheduler.step()
                    self.optimizer.zero_grad()
                stats["policy_loss"].append(pl.loss.item())
                stats["value_loss"].append(vl.item())
                stats["clipfrac"].append(pl.clipfrac.item())
                stats["vf_clipfrac"].append(vf_clipfrac.item())
                stats["approx_kl"].append(pl.approx_kl.item())
                stats["entropy"].append(masked_mean(entropy.detach(), mask).item())
        return {k: sum(v) / len(v) for k, v in stats.items()}

    def step(self, indices: Sequence[int]) -> tuple[dict[str, float], Rollout, torch.Tensor]:
        """One PPO step on the prompts at ``indices`` (this process's share); returns the metrics row."""
        cfg, acc = self.cfg, self.accelerator
        t0 = time.perf_counter()
        kl_coef, lr = self.kl_ctl.value, self.scheduler.get_last_lr()[0]
        rollout, raw = self.rollout(indices)
        shaped = shape_rewards(rollout, raw, cfg, kl_coef)
        stats = self.update(rollout, shaped)
        m = rollout.mask.float()
        local = {
            "reward": raw.mean(), "reward_std": raw.std(unbiased=False), "score": shaped["scores"].mean(),
            "non_score_reward": (-kl_coef * shaped["kl"]).sum(1).mean(), "kl": shaped["kl"].sum(1).mean(),
            "answer_length": (m.sum(1) - rollout.has_eos.float()).mean(),
            "truncated": (~rollout.has_eos).float().mean(),
            **{k: torch.tensor(v) for k, v in stats.items()},
        }
        keys = sorted(local)
        gathered = acc.gather(torch.stack([local[k].float().to(acc.device) for k in keys])[None, :])
        means = gathered.reshape(-1, len(keys)).mean(0).tolist()
        row = dict(zip(keys, means))
        self.kl_ctl.update(row["kl"], cfg.batch_size(acc.num_processes))
        self.step_count += 1
        self.episodes += cfg.batch_size(acc.num_processes)
        row.update(step=self.step_count, episodes=self.episodes, kl_coef=kl_coef, lr=lr,
                   seconds=round(time.perf_counter() - t0, 3))
        return row, rollout, raw

    def train(self, on_step: Any = None) -> list[dict[str, float]]:
        """Run ``num_steps`` PPO steps; returns every step's metrics row."""
        from tqdm import tqdm

        from cai.train.ppo.rollout import prompt_batches

        cfg, acc = self.cfg, self.accelerator
        local = cfg.local_batch_size()
        batches = prompt_batches(len(self.prompts), cfg.batch_size(acc.num_processes), cfg.seed)
        history = []
        # One bar on the main process; the ETA is the mean step time so far (smoothing=0), honest from step 1.
        with tqdm(total=self.num_steps, desc="ppo", unit="step", dynamic_ncols=True, mininterval=0,
                  smoothing=0, disable=not acc.is_main_process) as bar:
            for _ in range(self.num_steps):
                global_idx = next(batches)
                mine = global_idx[acc.process_index * local : (acc.process_index + 1) * local]
                row, rollout, raw = self.step(mine)
                history.append(row)
                log.info("step %d/%d %s", self.step_count, self.num_steps, format_metrics(row))
                bar.set_postfix_str(format_metrics({k: row[k] for k in ("reward", "kl") if k in row}))
                bar.update(1)
                if on_step is not None:
                    on_step(row, [self.prompts[i] for i in mine], rollout, raw)
        return history


def format_metrics(row: dict[str, float]) -> str:
    """One log line's worth of a metrics row.

    >>> format_metrics({"reward": 0.51234, "kl": 0.1, "step": 3})
    'reward=0.5123 kl=0.1'
    """
    keys = [k for k in ("reward", "kl", "kl_coef", "entropy", "clipfrac", "value_loss", "answer_length",
                        "truncated") if k in row]
    return " ".join(f"{k}={row[k]:.4g}" for k in keys if isinstance(row[k], float) and math.isfinite(row[k]))
