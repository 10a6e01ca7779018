"""DPO on preference records through TRL's DPOTrainer, with optional per-pair soft labels.

Every ``DPOConfig`` key passes through (``loss_type`` such as ``sigmoid``,
``robust``, ``ipo``, ``sigmoid_norm``; ``beta``; ``label_smoothing``;
``precompute_ref_log_probs``...). The reference is ``ref_model`` if given,
else the base model with the LoRA adapter switched off (``--lora``), else a
frozen copy of the starting model.

``soft_labels=True`` trains with each pair's own label instead:
:class:`SoftLabelDPOTrainer` computes the answers' log-probabilities with TRL's
own fused head and reference code, then :func:`cai.train.losses.soft_dpo_loss`
(conservative DPO with the pair's ``p_chosen``, times its ``weight``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from transformers.utils import ModelOutput
from trl import DPOTrainer

from cai.core.errors import CaiError
from cai.core.jsonl import PathLike
from cai.train.common.models import ModelOptions
from cai.train.common.runner import TrainResult
from cai.train.losses import soft_dpo_loss
from cai.train.soft_labels import SOFT_KEYS, pop_soft_labels, with_soft_columns

log = logging.getLogger(__name__)

_NON_MODEL_KEYS = ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")


def answer_logps(model: Any, inputs: dict[str, Any]) -> tuple[Any, Any]:
    """Summed log-probabilities of the chosen and rejected answers of a DPO batch (with gradients).

    The batch is TRL's: ``input_ids``/``attention_mask``/``completion_mask`` of shape
    ``[2B, T]``, chosen rows first. Returns two ``[B]`` tensors.
    """
    kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
    mask = inputs["completion_mask"]  # [2B, T]
    labels = inputs["input_ids"].masked_fill(mask == 0, -100)  # [2B, T]
    out = model(**kwargs, use_cache=False, labels=labels, fused_lm_head=True)
    shift_mask = mask[:, 1:]  # [2B, T-1]: token t+1 is predicted at position t
    per_token = out.log_probs[:, -shift_mask.size(1):]  # [2B, T-1]
    return (per_token * shift_mask).sum(dim=1).chunk(2)  # [B], [B]


class SoftLabelDPOTrainer(DPOTrainer):
    """DPOTrainer whose loss is :func:`~cai.train.losses.soft_dpo_loss` with each pair's
    ``p_chosen``/``weight``."""

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        self._signature_columns = with_soft_columns(self._signature_columns)

    def compute_ref_log_probs(self, model, inputs):
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k not in SOFT_KEYS})

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        p_chosen, weight = pop_soft_labels(inputs)
        chosen, rejected = answer_logps(model, inputs)  # [B], [B]
        if "ref_chosen_logps" in inputs:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = self.compute_ref_log_probs(
                self.ref_model if self.ref_model is not None else model, inputs)
        loss, h = soft_dpo_loss(chosen, rejected, ref_chosen, ref_rejected, p_chosen, self.beta, weight)
        self._log_rewards(chosen.detach() - ref_chosen, rejected.detach() - ref_rejected)
        if return_outputs:
            return loss, ModelOutput(logits=(self.beta * h.detach())[:, None])
        return loss

    def _log_rewards(self, chosen_logratios: Any, rejected_logratios: Any) -> None:
        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        chosen, rejected = gather(self.beta * chosen_logratios), gather(self.beta * rejected_logratios)
        m = self._metrics[mode]
        m["rewards/chosen"].append(chosen.mean().item())
        m["rewards/rejected"].append(rejected.mean().item())
        m["rewards/accuracies"].append((chosen > rejected).float().mean().item())
        m["rewards/margins"].append((chosen - rejected).mean().item())


def default_dpo_config(output_dir: PathLike, **options: Any) -> Any:
    """A ``DPOConfig`` with cai's defaults and ``options``."""
    from trl import DPOConfig

    from cai.train.common.config import build_config, training_defaults

    return build_config(DPOConfig, options=options, defaults=training_defaults(DPOConfig, output_dir))


def check_soft_label_config(cfg: Any) -> None:
    """Soft labels replace TRL's ``sigmoid`` loss; refuse settings they would silently ignore."""
    loss_types = [cfg.loss_type] if isinstance(cfg.loss_type, str) else list(cfg.loss_type)
    clashes = []
    if loss_types != ["sigmoid"]:
        clashes.append(f"loss_type={loss_types}")
    if getattr(cfg, "f_divergence_type", "reverse_kl") not in ("reverse_kl", "reverse_KL"):
        clashes.append(f"f_divergence_type={cfg.f_divergence_type}")
    for key in ("ld_alpha",):
        if getattr(cfg, key, None) is not None:
            clashes.append(f"{key}={getattr(cfg, key)}")
    if getattr(cfg, "use_weighting", False):
        clashes.append("use_weighting=true")
    if getattr(cfg, "label_smoothing", 0.0):
        clashes.append(f"label_smoothing={cfg.label_smoothing}")
    if clashes:
        raise CaiError(f"--soft-labels uses each pair's p_chosen with the sigmoid DPO loss; it cannot "
                       f"combine with {', '.join(clashes)}",
                       hint="drop --soft-labels, or drop those settings")


def check_cot_labels(paths: Sequence[str], soft_labels: bool) -> None:
    """Refuse hard-label DPO on chain-of-thought labels: clamped to 0.4-0.6, they only make sense as soft
    labels.

    Plain DPO would train every such pair as a certain preference for the answer the clamp barely favoured.
    """
    if soft_labels:
        return
    from cai.core.jsonl import read_records
    from cai.core.records import PreferenceRecord

    cot = [p for p in paths for r in read_records(p, PreferenceRecord)
           if r.ai_label is not None and r.ai_label.cot]
    if cot:
        raise CaiError(f"{cot[0]}: {len(cot)} pair(s) were labelled with --cot, whose labels are "
                       f"clamped to a "
                       "narrow band around 0.5: plain DPO would train them as certain preferences",
                       hint="train with --soft-labels (recipe: policy.soft_labels: true), or label "
                            "without --cot")


def train_dpo(
    data: PathLike | Sequence[PathLike],
    *,
    output_dir: PathLike,
    model: str = "default",
    ref_model: str | None = None,
    config: Any = None,
    options: ModelOptions = ModelOptions(),
    soft_labels: bool = False,
    eval_fraction: float = 0.0,
) -> TrainResult:
    """Train ``model`` with DPO on preference records; save it and a model card in ``output_dir``."""
    from cai.train.common.data import as_paths, preference_datasets
    from cai.train.common.guards import NonFiniteGuard
    from cai.train.common.models import load_causal_lm, load_tokenizer, lora_config
    from cai.train.common.runner import run_and_save
    from cai.train.soft_labels import SoftLabelCollator, label_summary

    cfg = config if config is not None else default_dpo_config(output_dir)
    cfg.output_dir = str(output_dir)
    if soft_labels:
        check_soft_label_config(cfg)
    check_cot_labels(as_paths(data), soft_labels)
    train, held_out = preference_datasets(data, eval_fraction, seed=0)
    labels = label_summary(train["p_chosen"], train["weight"])
    if not soft_labels and (labels["soft_labels"] or labels["weighted"]):
        log.warning("%d pair(s) have a soft p_chosen and %d a weight other than 1: plain DPO ignores both "
                    "(pass --soft-labels to use them)", labels["soft_labels"], labels["weighted"])
    tok = load_tokenizer(model, chat_template=options.chat_template,
                         trust_remote_code=options.trust_remote_code)
    policy = load_causal_lm(model, dtype=options.dtype, trust_remote_code=options.trust_remote_code)
    ref = (load_causal_lm(ref_model, dtype=options.dtype, trust_remote_code=options.trust_remote_code)
           if ref_model else None)
    cls = SoftLabelDPOTrainer if soft_labels else DPOTrainer
    reference = (ref_model
                 or ("the base model (LoRA adapter off)" if options.lora else f"a frozen copy of {model}"))
    log.info("DPO%s on %d pair(s) (%d held out) from %s: %s, reference %s -> %s",
             " with soft labels" if soft_labels else "", len(train), len(held_out), ", ".join(as_paths(data)),
             model, reference, output_dir)
    guard = NonFiniteGuard()
    trainer = cls(
        model=policy, ref_model=ref, args=cfg, train_dataset=train,
        eval_dataset=held_out if len(held_out) else None, processing_class=tok,
        peft_config=lora_config(options.lora, "CAUSAL_LM"), callbacks=[guard],
    )
    if soft_labels:
        trainer.data_collator = SoftLabelCollator(trainer.data_collator)
    evaluate = (lambda: trainer.evaluate()) if len(held_out) else None
    return run_and_save(
        trainer, guard, output_dir=output_dir, resume=options.resume, evaluate=evaluate,
        card={"trainer": "dpo", "base_model": model, "data_files": {"preferences": as_paths(data)},
              "audit": options.audit,
              "notes": {"reference": reference, "soft_labels": soft_labels, "labels": labels,
                        "pairs_held_out": len(held_out),
                        "lora": options.lora.__dict__ if options.lora else None}},
    )
