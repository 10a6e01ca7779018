"""Supervised fine-tuning on prompt/completion records (SL-CAI revisions), through TRL's SFTTrainer.

The data is TRL's conversational prompt-completion format, so the loss falls on
the completion only (``completion_only_loss``). Every ``SFTConfig`` key can be
set; LoRA goes through peft.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from cai.core.jsonl import PathLike
from cai.train.common.models import ModelOptions
from cai.train.common.runner import TrainResult

log = logging.getLogger(__name__)


def default_sft_config(output_dir: PathLike, **options: Any) -> Any:
    """An ``SFTConfig`` with cai's defaults (see :func:`cai.train.common.config.training_defaults`) and
    ``options``."""
    from trl import SFTConfig

    from cai.train.common.config import build_config, training_defaults

    return build_config(SFTConfig, options=options, defaults=training_defaults(SFTConfig, output_dir))


def train_sft(
    data: PathLike | Sequence[PathLike],
    *,
    output_dir: PathLike,
    model: str = "default",
    config: Any = None,
    options: ModelOptions = ModelOptions(),
    eval_fraction: float = 0.0,
) -> TrainResult:
    """Fine-tune ``model`` on SFT records; save it, its tokenizer and a model card in ``output_dir``.

    ``config`` is an ``SFTConfig`` (default: :func:`default_sft_config`); its
    ``output_dir`` is set to ``output_dir``.
    """
    from trl import SFTTrainer

    from cai.train.common.data import as_paths, sft_datasets
    from cai.train.common.guards import NonFiniteGuard
    from cai.train.common.models import load_causal_lm, load_tokenizer, lora_config
    from cai.train.common.runner import run_and_save

    cfg = config if config is not None else default_sft_config(output_dir)
    cfg.output_dir = str(output_dir)
    train, held_out = sft_datasets(data, eval_fraction, seed=cfg.seed)
    tok = load_tokenizer(model, chat_template=options.chat_template,
                         trust_remote_code=options.trust_remote_code)
    lm = load_causal_lm(model, dtype=options.dtype, trust_remote_code=options.trust_remote_code)
    guard = NonFiniteGuard()
    log.info("SFT on %d record(s) (%d held out) from %s: model %s -> %s", len(train), len(held_out),
             ", ".join(as_paths(data)), model, output_dir)
    trainer = SFTTrainer(
        model=lm, args=cfg, train_dataset=train, eval_dataset=held_out if len(held_out) else None,
        processing_class=tok, peft_config=lora_config(options.lora, "CAUSAL_LM"), callbacks=[guard],
    )
    evaluate = (lambda: trainer.evaluate()) if len(held_out) else None
    return run_and_save(
        trainer, guard, output_dir=output_dir, resume=options.resume, evaluate=evaluate,
        card={"trainer": "sft", "base_model": model, "data_files": {"train": as_paths(data)},
              "audit": options.audit, "notes": {"lora": options.lora.__dict__ if options.lora else None,
                                                "held_out_records": len(held_out)}},
    )
