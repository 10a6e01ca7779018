"""``PPOConfig``: the PPO trainer's settings, keys named like TRL's former ``PPOConfig``.

Batch arithmetic (as in TRL): each optimizer step sees a mini-batch of
``per_device_train_batch_size * gradient_accumulation_steps`` answers per
process; one rollout holds ``num_mini_batches`` of them, so a PPO step samples
``local_batch_size`` answers per process and ``batch_size`` over all processes,
then makes ``num_ppo_epochs * num_mini_batches`` optimizer steps on them.
Training runs ``max_steps`` PPO steps, else enough for ``total_episodes``
answers, else ``num_train_epochs`` passes over the prompts.

>>> cfg = PPOConfig(per_device_train_batch_size=4, gradient_accumulation_steps=2, num_mini_batches=2)
>>> cfg.mini_batch_size(), cfg.local_batch_size(), cfg.batch_size(world_size=2)
(8, 16, 32)
>>> cfg.num_steps(n_prompts=100, world_size=2), PPOConfig(total_episodes=70).num_steps(100)
(4, 9)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class PPOConfig:
    """Every key can come from ``--config FILE`` or ``--set KEY=VALUE``; see the module doc for the batch
    sizes."""

    output_dir: str = "runs/ppo"
    # -- optimisation
    learning_rate: float = 3e-6
    lr_scheduler_type: str = "linear"  # linear decay to 0 over training, or constant
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    num_mini_batches: int = 1
    num_ppo_epochs: int = 4
    max_grad_norm: float = 1.0
    adam_epsilon: float = 1e-5
    weight_decay: float = 0.0
    # -- length of training
    total_episodes: int | None = None
    max_steps: int | None = None
    num_train_epochs: float = 1.0
    # -- KL penalty against the frozen reference
    kl_coef: float = 0.05  # initial coefficient (the adaptive controller moves it)
    kl_estimator: str = "k1"  # k1: log pi - log ref; k3: (r - 1) - log r
    # per-answer KL (nats) the adaptive controller aims at; None: fixed kl_coef
    target_kl: float | None = None
    kl_horizon: int = 10000  # adaptive controller horizon, in answers
    # -- PPO losses and advantages
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    whiten_rewards: bool = False
    # -- rollouts
    response_length: int = 53
    max_prompt_length: int = 512
    temperature: float = 0.7
    missing_eos_penalty: float | None = None  # subtracted from the score of an answer with no EOS
    local_rollout_forward_batch_size: int = 64
    # -- precision (LoRA is chosen with the command's --lora options, as for the other trainers)
    bf16: bool = False  # accelerate autocast to bf16 on a GPU; log-probs are still taken in fp32
    # -- bookkeeping
    seed: int = 0
    report_to: str = "none"
    save_steps: int = 0  # a checkpoint every N steps (0: only at the end)
    log_samples: int = 2  # answers per step kept in samples.jsonl

    def __post_init__(self) -> None:
        positive = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                    "num_mini_batches", "num_ppo_epochs", "response_length", "max_prompt_length",
                    "temperature", "cliprange", "cliprange_value", "kl_horizon",
                    "local_rollout_forward_batch_size", "num_train_epochs", "max_grad_norm")
        for key in positive:
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("total_episodes", "max_steps", "target_kl"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ValueError(f"{key} must be > 0 (or null), got {value}")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"need 0 < gamma <= 1 and 0 <= lam <= 1, got gamma={self.gamma} lam={self.lam}")
        if self.kl_coef < 0 or self.vf_coef < 0 or self.save_steps < 0 or self.log_samples < 0:
            raise ValueError("kl_coef, vf_coef, save_steps and log_samples must be >= 0")
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator must be k1 or k3, got {self.kl_estimator!r}")
        if self.lr_scheduler_type not in ("linear", "constant"):
            raise ValueError(f"lr_scheduler_type must be linear or constant, got {self.lr_scheduler_type!r}")

    def mini_batch_size(self) -> int:
        """Answers per optimizer step on one process."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    def local_batch_size(self) -> int:
        """Answers one process samples per PPO step."""
        return self.mini_batch_size() * self.num_mini_batches

    def batch_size(self, world_size: int = 1) -> int:
        """Answers all processes sample per PPO step."""
        return self.local_batch_size() * world_size

    def num_steps(self, n_prompts: int, world_size: int = 1) -> int:
        """PPO steps to run: ``max_steps``, else ``total_episodes / batch``, else epochs over the prompts."""
        if self.max_steps:
            return int(self.max_steps)
        episodes = self.total_episodes or math.ceil(self.num_train_epochs * n_prompts)
        return max(1, math.ceil(episodes / self.batch_size(world_size)))
