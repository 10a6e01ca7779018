"""Carrying each pair's ``p_chosen`` and ``weight`` through TRL's preference trainers.

TRL's collators build the token tensors and drop other columns. The
:class:`SoftLabelCollator` wraps such a collator and adds the two per-pair
columns as ``[B]`` float tensors; the trainers' ``compute_loss`` overrides pop
them again with :func:`pop_soft_labels` before the model sees the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

SOFT_KEYS = ("p_chosen", "weight")


class SoftLabelCollator:
    """Wrap a preference collator: the same batch plus ``p_chosen`` and ``weight`` tensors.

    Missing values default to a hard label (``p_chosen = 1``) and ``weight = 1``.

    >>> c = SoftLabelCollator(lambda examples: {"n": len(examples)})
    >>> batch = c([{"p_chosen": 0.8, "weight": 2.0}, {}])
    >>> batch["n"], batch["p_chosen"].tolist(), batch["weight"].tolist()
    (2, [0.800000011920929, 1.0], [2.0, 1.0])
    """

    def __init__(self, base: Callable[[list[dict[str, Any]]], dict[str, Any]]):
        self.base = base

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.base([{k: v for k, v in e.items() if k not in SOFT_KEYS} for e in examples])
        batch["p_chosen"] = torch.tensor([float(e.get("p_chosen", 1.0)) for e in examples], dtype=torch.float)
        batch["weight"] = torch.tensor([float(e.get("weight", 1.0)) for e in examples], dtype=torch.float)
        return batch


def pop_soft_labels(inputs: dict[str, Any], required: bool = True) -> tuple[Any, Any]:
    """Remove ``p_chosen`` and ``weight`` from a batch; return them (or Nones when absent and not
    required)."""
    if required and "p_chosen" not in inputs:
        raise RuntimeError("the batch has no p_chosen column: wrap the trainer's collator in "
                           "SoftLabelCollator")
    return inputs.pop("p_chosen", None), inputs.pop("weight", None)


def with_soft_columns(signature_columns: list[str] | None) -> list[str] | None:
    """Trainer signature columns plus the soft-label ones, so ``remove_unused_columns`` keeps them.

    >>> with_soft_columns(["chosen_ids", "rejected_ids"])
    ['chosen_ids', 'rejected_ids', 'p_chosen', 'weight']
    >>> with_soft_columns(None) is None
    True
    """
    if signature_columns is None:
        return None
    return [*signature_columns, *(k for k in SOFT_KEYS if k not in signature_columns)]


def label_summary(p_chosen: Sequence[float], weight: Sequence[float]) -> dict[str, Any]:
    """How soft the labels of a dataset are, for logs and cards.

    >>> label_summary([1.0, 0.7, 0.5], [1.0, 1.0, 0.5])
    {'pairs': 3, 'soft_labels': 2, 'undecided': 1, 'mean_p_chosen': 0.7333, 'weighted': 1}
    """
    return {
        "pairs": len(p_chosen),
        "soft_labels": sum(1 for p in p_chosen if p not in (0.0, 1.0)),
        "undecided": sum(1 for p in p_chosen if p == 0.5),
        "mean_p_chosen": round(sum(p_chosen) / len(p_chosen), 4) if p_chosen else None,
        "weighted": sum(1 for w in weight if w != 1.0),
    }
