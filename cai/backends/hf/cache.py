"""A preallocated KV cache for the hf backend's decode loop.

transformers' ``DynamicCache`` grows each layer's keys and values with
``torch.cat`` at every step: a fresh ``[B, H, T, D]`` tensor per layer per token,
so the cache is copied (and, on CPU, its memory re-faulted) every step. That was
most of a batch-32 decode step on the default model (70% in ``aten::cat`` in a
profile at T≈200). :class:`PreallocatedLayer` writes each step's keys into a
buffer sized for the whole request and hands attention a view of the filled
part; dropping finished rows compacts the buffer in place.

Only plain full-attention decoders get it (every layer a ``DynamicLayer``);
anything else (sliding windows, shared KV, linear attention) keeps
``DynamicCache``, see :func:`make_cache`.

This module imports transformers at import time: import it inside functions.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One layer's keys/values in buffers of ``rows x capacity`` positions, filled left to right.

    Subclasses ``DynamicLayer`` because transformers' ``Cache`` dispatches on it
    (mask sizes, sequence length); the storage is its own. Buffers grow (one
    copy) if a request outruns ``capacity``.
    """

    def __init__(self, rows: int, capacity: int):
        super().__init__()
        self.row_capacity, self.capacity = max(1, rows), max(1, capacity)
        self.length = 0
        self.rows = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        b, h, _, dk = key_states.shape
        dv = value_states.shape[-1]
        rows = max(b, self.row_capacity)
        self.kbuf = key_states.new_empty((rows, h, self.capacity, dk))  # [rows, H, capacity, Dk]
        self.vbuf = value_states.new_empty((rows, h, self.capacity, dv))
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True

    def _grow(self, rows: int, length: int) -> None:
        rows, length = max(rows, self.kbuf.shape[0]), max(length, self.kbuf.shape[2])
        for name in ("kbuf", "vbuf"):
            old = getattr(self, name)
            new = old.new_empty((rows, old.shape[1], length, old.shape[3]))
            new[: self.rows, :, : self.length] = old[: self.rows, :, : self.length]
            setattr(self, name, new)

    def _views(self) -> None:
        self.keys = self.kbuf[: self.rows, :, : self.length]  # [rows, H, T, Dk], a view
        self.values = self.vbuf[: self.rows, :, : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        b, end = key_states.shape[0], self.length + key_states.shape[-2]
        if b > self.kbuf.shape[0] or end > self.kbuf.shape[2]:
            self._grow(b, max(end, 2 * self.kbuf.shape[2]))
        self.kbuf[:b, :, self.length : end].copy_(key_states)
        self.vbuf[:b, :, self.length : end].copy_(value_states)
        self.rows, self.length = b, end
        self._views()
        return self.keys, self.values

    def fill(self, keys: torch.Tensor, values: torch.Tensor, rows: int) -> None:
        """Start the layer with one sequence's keys/values ``[1, H, T, D]`` copied into ``rows`` rows."""
        if not self.is_initialized:
            self.lazy_initialization(keys.expand(rows, -1, -1, -1), values)
        t = keys.shape[-2]
        if rows > self.kbuf.shape[0] or t > self.kbuf.shape[2]:
            self.rows = self.length = 0
            self._grow(rows, max(t, self.kbuf.shape[2]))
        self.kbuf[:rows, :, :t] = keys  # broadcasts over rows
        self.vbuf[:rows, :, :t] = values
        self.rows, self.length = rows, t
        self._views()

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep (or repeat) the rows ``indices``, in place in the buffer."""
        n = len(indices)
        if n > self.kbuf.shape[0]:
            self._grow(n, self.kbuf.shape[2])
        self.kbuf[:n, :, : self.length] = self.kbuf[indices, :, : self.length]  # RHS is a copy: no aliasing
        self.vbuf[:n, :, : self.length] = self.vbuf[indices, :, : self.length]
        self.rows = n
        self._views()


def can_preallocate(lm: Any) -> bool:
    """True when every layer of the model's default cache is a plain full-attention ``DynamicLayer``."""
    try:
        layers = DynamicCache(config=lm.config).layers
    except Exception:  # noqa: BLE001 - exotic configs: keep transformers' own cache
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def make_cache(lm: Any, rows: int, capacity: int, preallocate: bool = True) -> Cache:
    """A cache for ``rows`` sequences of up to ``capacity`` positions: preallocated where the model allows."""
    if preallocate and can_preallocate(lm):
        n = len(DynamicCache(config=lm.config).layers)
        return Cache(layers=[PreallocatedLayer(rows, capacity) for _ in range(n)])
    return DynamicCache(config=lm.config)


def is_preallocated(cache: Cache) -> bool:
    return bool(cache.layers) and all(isinstance(layer, PreallocatedLayer) for layer in cache.layers)


def layer_states(cache: Cache, length: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's ``(keys, values)`` up to ``length`` positions, as views."""
    return [(layer.keys[..., :length, :], layer.values[..., :length, :]) for layer in cache.layers]


def cache_kwargs(lm: Any, cache: Cache) -> dict:
    """``cache`` passed under the keyword ``lm.forward`` takes: ``cache`` in newer transformers, else
    ``past_key_values`` (the old name warns on every call where the new one exists)."""
    import inspect

    try:
        params = inspect.signature(lm.forward).parameters
    except (TypeError, ValueError):
        params = {}
    name = "cache" if "cache" in params else "past_key_values"
    return {name: cache, "use_cache": True}
