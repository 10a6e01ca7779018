"""Run a built TRL trainer to the end: train (optionally resuming), save, card, guard.

Every trainer module builds its TRL trainer with a :class:`~cai.train.common.guards.NonFiniteGuard`
among its callbacks and hands it to :func:`run_and_save`, which

1. trains (from the newest checkpoint in the output dir when ``resume``),
   then runs the trainer's own evaluation, if any,
2. saves the model and tokenizer to the output dir; a LoRA run saves the
   merged model there (loadable by any ``from_pretrained``) and the adapter in
   ``adapter/``,
3. writes the model card (main process only), with the final metrics,
4. raises :class:`~cai.train.common.guards.NonFiniteLossError` if the loss went NaN/inf
   (after saving the last finite weights and the card).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run left behind."""

    output_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    card: Path | None = None


def last_logged(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The last logged value of every numeric key (``step``/``epoch`` bookkeeping left out).

    >>> last_logged([{"loss": 1.0, "step": 1}, {"loss": 0.5, "grad_norm": 2.0, "step": 2},
    ...              {"train_runtime": 3.0}])
    {'loss': 0.5, 'grad_norm': 2.0, 'train_runtime': 3.0}
    """
    out: dict[str, float] = {}
    for entry in log_history:
        for k, v in entry.items():
            if k in ("step", "epoch", "total_flos") or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            out[k] = v
    return out


def json_safe(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics with NaN/inf as strings (JSON has no NaN).

    >>> json_safe({"a": 1.0, "b": float("nan")})
    {'a': 1.0, 'b': 'nan'}
    """
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def _resume_point(output_dir: Path, resume: bool) -> str | None:
    if not resume:
        return None
    from transformers.trainer_utils import get_last_checkpoint

    ckpt = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if ckpt is None:
        log.warning("--resume: no checkpoint in %s, starting from the beginning", output_dir)
    else:
        log.info("resuming from %s", ckpt)
    return ckpt


def save_model(trainer: Any, output_dir: Path) -> None:
    """Save weights and tokenizer; for a LoRA model, the merged model plus ``adapter/``."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    if not isinstance(model, PeftModel) or trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        trainer.save_model(str(output_dir))
        return
    trainer.save_model(str(output_dir / "adapter"))
    if trainer.is_world_process_zero():
        merged = model.merge_and_unload()
        merged.save_pretrained(str(output_dir))
        trainer.processing_class.save_pretrained(str(output_dir))
        log.info("LoRA: merged model saved to %s, adapter to %s", output_dir, output_dir / "adapter")
    trainer.accelerator.wait_for_everyone()


def run_and_save(
    trainer: Any,
    guard: Any,
    *,
    output_dir: str | Path,
    card: Mapping[str, Any],
    resume: bool = False,
    evaluate: Callable[[], Mapping[str, Any]] | None = None,
) -> TrainResult:
    """Train, evaluate (``evaluate()`` returns extra metrics), save, write the card; see the module doc.

    ``card`` holds :func:`cai.train.common.cards.write_model_card`'s keyword arguments
    other than ``metrics`` and ``config`` (taken from the trainer).
    """
    from cai.train.common.cards import write_model_card

    out = Path(output_dir)
    result = trainer.train(resume_from_checkpoint=_resume_point(out, resume))
    metrics: dict[str, Any] = last_logged(trainer.state.log_history)
    metrics.update({k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))})
    metrics["global_step"] = int(trainer.state.global_step)
    if evaluate is not None and guard.tripped_at is None:
        metrics.update(evaluate())
    save_model(trainer, out)
    metrics = json_safe(metrics)
    card_path = None
    if trainer.is_world_process_zero():
        notes = {**card.get("notes", {}), "processes": trainer.accelerator.num_processes}
        card_path = write_model_card(out, config=trainer.args, metrics=metrics, **{**card, "notes": notes})
        log.info("saved the model to %s (model card %s)", out, card_path)
    guard.raise_if_tripped(str(out))
    return TrainResult(output_dir=out, metrics=metrics, card=card_path)
