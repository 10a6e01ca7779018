"""The preference model: a one-output sequence classifier trained with a soft-label Bradley-Terry loss.

TRL's RewardTrainer does the tokenizing, batching and logging; the one change,
:meth:`SoftLabelRewardTrainer.compute_loss`, replaces its hard-label loss with
:func:`cai.train.losses.soft_bradley_terry_loss` (each pair's ``p_chosen`` and
``weight``, an optional margin). Accuracy is measured on a held-out split
(:func:`cai.stages.export.split_by_id`) and on an optional human-labelled file, by
scoring each answer exactly as :class:`cai.train.rewards.PreferenceModelReward`
will at RL time (chat template, left truncation, last non-pad token).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from trl import RewardTrainer

from cai.core.jsonl import PathLike
from cai.train.common.models import ModelOptions
from cai.train.common.runner import TrainResult
from cai.train.losses import soft_bradley_terry_loss
from cai.train.soft_labels import pop_soft_labels, with_soft_columns

log = logging.getLogger(__name__)


class SoftLabelRewardTrainer(RewardTrainer):
    """RewardTrainer whose loss is the soft-label Bradley-Terry loss (everything else is TRL's)."""

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        self._signature_columns = with_soft_columns(self._signature_columns)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        p_chosen, weight = pop_soft_labels(inputs)
        _, outputs = super().compute_loss(model, inputs, return_outputs=True)  # TRL's forward and metrics
        rewards_chosen, rewards_rejected = outputs.logits.squeeze(-1).chunk(2)  # [B], [B]
        loss = soft_bradley_terry_loss(rewards_chosen, rewards_rejected, p_chosen, weight,
                                       inputs.get("margin"))
        if self.args.center_rewards_coefficient is not None:
            loss = (loss + self.args.center_rewards_coefficient
                    * ((rewards_chosen + rewards_rejected) ** 2).mean())
        return (loss, outputs) if return_outputs else loss


def pairwise_accuracy(rewards_chosen: Sequence[float], rewards_rejected: Sequence[float],
                      p_chosen: Sequence[float]) -> dict[str, float]:
    """How often the preference model ranks a pair the way its label does.

    A pair counts toward ``chosen`` when ``p_chosen > 0.5`` and toward ``rejected``
    when below; undecided pairs (``0.5``) are left out; a tie scores one half.

    >>> pairwise_accuracy([2.0, 0.0, 1.0, 3.0], [1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.5])
    {'accuracy': 0.5, 'pairs': 3, 'mean_margin': 0.0}
    >>> pairwise_accuracy([0.0], [1.0], [0.2])["accuracy"]
    1.0
    """
    scores, margins = [], []
    for rc, rr, p in zip(rewards_chosen, rewards_rejected, p_chosen):
        if p == 0.5:
            continue
        d = (rc - rr) if p > 0.5 else (rr - rc)
        scores.append(1.0 if d > 0 else 0.5 if d == 0 else 0.0)
        margins.append(d)
    n = len(scores)
    return {"accuracy": sum(scores) / n if n else float("nan"), "pairs": n,
            "mean_margin": sum(margins) / n if n else float("nan")}


def evaluate_pairs(model: Any, tokenizer: Any, dataset: Any, *, max_length: int | None = None,
                   batch_size: int = 8) -> dict[str, float]:
    """Score both answers of every pair in a preference dataset; return :func:`pairwise_accuracy`."""
    from cai.train.rewards import PreferenceModelReward, completion_text

    was_training = model.training
    model.eval()
    try:
        scorer = PreferenceModelReward("<in memory>", model=model, tokenizer=tokenizer,
                                       max_length=max_length or 1024, batch_size=batch_size)
        prompts = list(dataset["prompt"])
        r_c = scorer(prompts, [completion_text(c) for c in dataset["chosen"]])
        r_r = scorer(prompts, [completion_text(r) for r in dataset["rejected"]])
    finally:
        model.train(was_training)
    return pairwise_accuracy(r_c, r_r, list(dataset["p_chosen"]))


def default_rm_config(output_dir: PathLike, **options: Any) -> Any:
    """A ``RewardConfig`` with cai's defaults and ``options``."""
    from trl import RewardConfig

    from cai.train.common.config import build_config, training_defaults

    return build_config(RewardConfig, options=options, defaults=training_defaults(RewardConfig, output_dir))


def _with_margin(ds: Any, margin: float | None) -> Any:
    return ds if not margin else ds.add_column("margin", [float(margin)] * len(ds))


def train_reward_model(
    data: PathLike | Sequence[PathLike],
    *,
    output_dir: PathLike,
    model: str = "default",
    config: Any = None,
    options: ModelOptions = ModelOptions(),
    pad_token: str | None = None,
    margin: float | None = None,
    eval_fraction: float = 0.1,
    human_eval: PathLike | None = None,
) -> TrainResult:
    """Train a preference model on preference records; report held-out (and human-eval) accuracy.

    ``pad_token`` names an existing token to pad with when the tokenizer pads
    with EOS (the embedded default model does: pass ``'<|endoftext|>'``).
    """
    from cai.train.common.data import as_paths, preference_datasets
    from cai.train.common.guards import NonFiniteGuard
    from cai.train.common.models import load_reward_model, load_tokenizer, lora_config
    from cai.train.common.runner import run_and_save
    from cai.train.soft_labels import SoftLabelCollator, label_summary

    cfg = config if config is not None else default_rm_config(output_dir)
    cfg.output_dir = str(output_dir)
    train, held_out = preference_datasets(data, eval_fraction, seed=0)
    human = preference_datasets(human_eval, 0.0)[0] if human_eval else None
    tok = load_tokenizer(model, pad_token=pad_token, chat_template=options.chat_template,
                         trust_remote_code=options.trust_remote_code)
    rm = load_reward_model(model, tok, dtype=options.dtype, trust_remote_code=options.trust_remote_code)
    labels = label_summary(train["p_chosen"], train["weight"])
    log.info("preference model on %d pair(s) (%d held out; %d soft labels) from %s: %s -> %s",
             len(train), len(held_out), labels["soft_labels"], ", ".join(as_paths(data)), model, output_dir)
    guard = NonFiniteGuard()
    trainer = SoftLabelRewardTrainer(
        model=rm, args=cfg, train_dataset=_with_margin(train, margin), processing_class=tok,
        peft_config=lora_config(options.lora, "SEQ_CLS"), callbacks=[guard],
    )
    trainer.data_collator = SoftLabelCollator(trainer.data_collator)
    kept = len(trainer.train_dataset)
    if kept < len(train):
        log.warning("%d of %d training pair(s) are longer than max_length=%s tokens and were left out",
                    len(train) - kept, len(train), cfg.max_length)

    def evaluate() -> dict[str, float]:
        net = trainer.accelerator.unwrap_model(trainer.model)
        bs = cfg.per_device_eval_batch_size
        out: dict[str, float] = {}
        for name, ds in (("held_out", held_out), ("human_eval", human)):
            if ds is not None and len(ds):
                res = evaluate_pairs(net, tok, ds, max_length=cfg.max_length, batch_size=bs)
                out.update({f"{name}_{k}": v for k, v in res.items()})
                log.info("%s accuracy: %.4f on %d pair(s)", name, res["accuracy"], res["pairs"])
        return out

    files = {"preferences": as_paths(data), **({"human_eval": as_paths(human_eval)} if human_eval else {})}
    return run_and_save(
        trainer, guard, output_dir=output_dir, resume=options.resume, evaluate=evaluate,
        card={"trainer": "reward_model", "base_model": model, "data_files": files, "audit": options.audit,
              "notes": {"labels": labels, "pairs_trained": kept, "pairs_held_out": len(held_out),
                        "margin": margin, "pad_token": tok.pad_token,
                        "lora": options.lora.__dict__ if options.lora else None}},
    )
