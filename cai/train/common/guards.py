"""Stop and save when the loss goes NaN/inf, instead of training on garbage.

:class:`NonFiniteGuard` is a transformers ``TrainerCallback``. Just before each
optimizer step it checks the (clipped) gradients; a NaN/inf gradient means the
loss of that step was NaN/inf. It then drops those gradients (so the optimizer
leaves the weights as they were: PyTorch's optimizers skip parameters whose
``grad`` is ``None``), stops training and asks the Trainer to save a checkpoint
of the last finite weights. It also watches logged losses, for set-ups whose
gradients it cannot see (DeepSpeed keeps them inside its engine). The wrapper
that ran ``trainer.train()`` then calls :meth:`NonFiniteGuard.raise_if_tripped`.

:func:`check_finite` is the same check for custom training loops.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from transformers import TrainerCallback

from cai.core.errors import CaiError

log = logging.getLogger(__name__)

FIX = "lower the learning rate, check the data for empty or huge examples, or use fp32"


class NonFiniteLossError(CaiError):
    """The loss (or its gradient) became NaN or infinite."""


def check_finite(loss: Any, step: int) -> float:
    """The loss as a float, or :class:`NonFiniteLossError` when it is NaN/inf.

    Takes a float or a one-element tensor, for custom loops:
    ``check_finite(loss, step)`` before ``loss.backward()``.

    >>> check_finite(0.25, 3)
    0.25
    >>> check_finite(float("nan"), 7)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    cai.train.common.guards.NonFiniteLossError: loss is nan at step 7 (fix: lower the learning rate, check the
    data for empty or huge examples, or use fp32)
    >>> import torch
    >>> check_finite(torch.tensor(float("-inf")), 2)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    cai.train.common.guards.NonFiniteLossError: loss is -inf at step 2 (fix: lower the learning rate, check
    the data for empty or huge examples, or use fp32)
    """
    value = float(loss.detach().float().item()) if hasattr(loss, "detach") else float(loss)
    if not math.isfinite(value):
        raise NonFiniteLossError(f"loss is {value} at step {step}", hint=FIX)
    return value


def grads_finite(model: Any) -> bool:
    """Whether every gradient of ``model`` is finite (parameters without a gradient are skipped).

    >>> import torch
    >>> lin = torch.nn.Linear(2, 1)
    >>> grads_finite(lin)
    True
    >>> lin(torch.tensor([[1.0, float("nan")]])).sum().backward()
    >>> grads_finite(lin)
    False
    """
    import torch

    for p in model.parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return False
    return True


def drop_grads(model: Any) -> None:
    """Set every gradient to ``None`` so the coming optimizer step changes nothing."""
    for p in model.parameters():
        p.grad = None


class NonFiniteGuard(TrainerCallback):
    """A TrainerCallback: on a NaN/inf loss, keep the last finite weights, stop, and save.

    After training, :attr:`tripped_at` is the step where it happened (None if never)
    and :attr:`reason` says what was seen.
    """

    def __init__(self) -> None:
        self.tripped_at: int | None = None
        self.reason: str = ""

    def _trip(self, state: Any, control: Any, reason: str) -> None:
        if self.tripped_at is None:
            self.tripped_at = int(state.global_step) + 1
            self.reason = reason
            log.error("non-finite %s at step %d: stopping and saving the last finite weights",
                      reason, self.tripped_at)
        control.should_training_stop = True
        control.should_save = True

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any):
        if model is not None and not grads_finite(model):
            drop_grads(model)
            self._trip(state, control, "gradient (the loss was NaN/inf)")
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any):
        loss = (logs or {}).get("loss")
        if isinstance(loss, (int, float)) and not math.isfinite(loss):
            self._trip(state, control, f"logged loss ({loss})")
        return control

    def raise_if_tripped(self, saved_to: str) -> None:
        """Raise :class:`NonFiniteLossError` naming the step and where the weights were saved."""
        if self.tripped_at is not None:
            raise NonFiniteLossError(
                f"training stopped at step {self.tripped_at}: non-finite {self.reason}; "
                f"the last finite weights are saved in {saved_to}",
                hint=FIX,
            )
