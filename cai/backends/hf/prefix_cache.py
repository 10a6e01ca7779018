"""Computing a shared prompt prefix once: within a batch and across calls.

The stages' prompts share long prefixes: every feedback chat starts with the
same system prompt and few-shot turns (~340 of ~560 tokens for the shipped
``harmless`` constitution), every critique chat with the same system prompt and
critique examples. :func:`prefill` finds the longest token prefix that all
prompts of a batch share (:func:`batch_shared_len`), takes its keys/values from
a :class:`PrefixStore` (computed once at batch 1, kept for the next call while
the model's weights are unchanged), copies them into every row of a
preallocated cache, and runs the model only on each prompt's remainder.

Exactness: keys/values at a position depend only on the tokens up to it, so the
prefix's states are the same whichever prompt they came from; positions and the
attention mask are laid out as ``[shared prefix][left-padded remainder]`` so
every real token keeps its position. Results match a full recompute up to fp32
summation order (about 1e-5 nats on the default model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIN_SHARED = 16  # shorter shared prefixes are not worth a separate forward pass


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` have in common.

    >>> common_prefix_len([1, 2, 3], [1, 2, 4, 5]), common_prefix_len([1], [2]), common_prefix_len([], [1])
    (2, 0, 0)
    """
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def batch_shared_len(prompts: Sequence[Sequence[int]], min_tokens: int = MIN_SHARED) -> int:
    """Tokens every prompt starts with, leaving each prompt at least one token of its own; 0 if under
    ``min_tokens``.

    The one-token remainder is what yields each prompt's next-token logits.

    >>> batch_shared_len([[1, 2, 3, 4], [1, 2, 3, 5, 6]], min_tokens=2)
    3
    >>> batch_shared_len([[1, 2, 3], [1, 2, 3, 4]], min_tokens=2)   # the shorter keeps its last token
    2
    >>> batch_shared_len([[1, 2, 3], [9, 2, 3]], min_tokens=1), batch_shared_len([[1, 2, 3]], min_tokens=5)
    (0, 0)
    """
    if not prompts:
        return 0
    first = prompts[0]
    m = min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        m = min(m, common_prefix_len(first, p))
    return m if m >= min_tokens else 0


def prefix_batches(prompts: Sequence[Sequence[int]], max_rows: int, max_padding: float,
                   min_extra: int = MIN_SHARED) -> list[list[int]]:
    """Batches of prompt indices for scoring: prompts that share more than the common prefix go together.

    Prompts are ordered by their tokens after the prefix all of them share, so
    prompts with a longer common prefix are neighbours (the two orders of one
    feedback pair share the whole conversation up to the options); neighbours
    sharing at least ``min_extra`` more tokens form a batch (up to ``max_rows``),
    whose own shared prefix :func:`prefill` then computes once. The rest go into
    length buckets (:func:`~cai.backends.hf.padding.length_buckets`).

    >>> prefix_batches([[1, 2, 3, 9], [1, 5, 5, 5, 7], [1, 2, 3, 8], [1, 5, 5, 5, 6], [1, 4]], 4, 0.1,
    ...                min_extra=2)
    [[2, 0], [3, 1], [4]]
    """
    from cai.backends.hf.padding import length_buckets

    m = batch_shared_len(prompts, 0)
    order = sorted(range(len(prompts)), key=lambda i: list(prompts[i][m:]))
    groups: list[list[int]] = []
    for i in order:
        g = groups[-1] if groups else None
        if g and len(g) < max_rows and common_prefix_len(prompts[g[0]][m:], prompts[i][m:]) >= min_extra:
            g.append(i)
        else:
            groups.append([i])
    singles = [g[0] for g in groups if len(g) == 1]
    buckets = length_buckets([len(prompts[i]) for i in singles], max_rows, max_padding)
    return [g for g in groups if len(g) > 1] + [[singles[k] for k in b] for b in buckets]


def weights_version(lm: Any) -> tuple:
    """Changes whenever any parameter is replaced or updated in place (an optimizer step,
    ``load_state_dict``).

    Stored prefix states are only reused while this stays the same.
    """
    return tuple((id(p), p._version) for p in lm.parameters())


class PrefixStore:
    """Keys/values of the last shared prefix computed (one sequence, batch 1), for reuse across batches and
    calls."""

    def __init__(self, min_tokens: int = MIN_SHARED):
        self.min_tokens = min_tokens
        self.tokens: list[int] = []
        self.states: list = []  # per layer (keys [1, H, T, D], values [1, H, T, D])
        self.version: tuple | None = None
        self.computed_tokens = 0  # prefix tokens run through the model (for tests and benchmarks)

    def get(self, lm: Any, tokens: Sequence[int]) -> list:
        """Per-layer ``(keys, values)`` of ``tokens`` at batch 1, reusing what was stored where it matches."""
        version = weights_version(lm)
        if version != self.version:
            self.tokens, self.states, self.version = [], [], version
        tokens = list(tokens)
        m = common_prefix_len(self.tokens, tokens)
        if m == len(tokens):
            return [(k[..., :m, :], v[..., :m, :]) for k, v in self.states]
        start = m if m >= self.min_tokens else 0
        self.states = _extend(lm, self.states, start, tokens)
        self.tokens = tokens
        self.computed_tokens += len(tokens) - start
        return self.states


def _extend(lm: Any, states: list, start: int, tokens: list[int]) -> list:
    """States of ``tokens``: the first ``start`` taken from ``states``, the rest computed (batch 1, no
    padding)."""
    import torch

    from cai.backends.hf.cache import cache_kwargs, layer_states, make_cache

    cache = make_cache(lm, 1, len(tokens))
    for layer, (k, v) in zip(cache.layers, states):
        if start:
            layer.fill(k[..., :start, :], v[..., :start, :], 1)
    dev = next(lm.parameters()).device
    ids = torch.tensor([tokens[start:]], device=dev)  # [1, T - start]
    pos = torch.arange(start, len(tokens), device=dev)[None, :]
    lm(input_ids=ids, position_ids=pos, **cache_kwargs(lm, cache), **_last_only(lm))
    return layer_states(cache)


@dataclass
class Prefilled:
    """A batch after its prompts ran: the cache, its mask ``[B, T]``, next-token logits ``[B, V]``, next
    positions ``[B]``."""

    cache: Any
    mask: Any
    logits: Any
    next_pos: Any
    shared: int  # prefix tokens taken from the store


def prefill(lm: Any, prompts: Sequence[Sequence[int]], pad_id: int, *, extra: int = 0, rows: int = 0,
            store: PrefixStore | None = None, preallocate: bool = True) -> Prefilled:
    """Run ``prompts`` (left-padded) into a fresh cache with room for ``extra`` more positions and ``rows``
    rows.

    With a ``store`` and a preallocated cache, the batch's shared prefix comes from the store.
    """
    import torch

    from cai.backends.hf.cache import cache_kwargs, is_preallocated, make_cache
    from cai.backends.hf.padding import left_pad

    dev = next(lm.parameters()).device
    m = batch_shared_len(prompts, store.min_tokens) if store is not None else 0
    ids, rem_mask = left_pad([p[m:] for p in prompts], pad_id, dev)  # [B, W]
    b = len(prompts)
    cache = make_cache(lm, max(rows, b), m + ids.shape[1] + extra, preallocate)
    if m and store is not None and is_preallocated(cache):
        for layer, (k, v) in zip(cache.layers, store.get(lm, prompts[0][:m])):
            layer.fill(k, v, b)
    elif m:  # a cache we cannot fill: run the whole prompts
        m = 0
        ids, rem_mask = left_pad(prompts, pad_id, dev)
    mask = torch.cat([rem_mask.new_ones((b, m)), rem_mask], dim=1)  # [B, m + W]
    positions = m + (rem_mask.cumsum(-1) - 1).clamp(min=0)  # [B, W]
    out = lm(input_ids=ids, attention_mask=mask, position_ids=positions, **cache_kwargs(lm, cache),
             **_last_only(lm))
    return Prefilled(cache, mask, out.logits[:, -1, :].float(), positions[:, -1] + 1, m)


def _last_only(lm: Any) -> dict:
    """``logits_to_keep=1`` where the model takes it: the prefill needs only the last position's logits."""
    import inspect

    try:
        ok = "logits_to_keep" in inspect.signature(lm.forward).parameters
    except (TypeError, ValueError):
        ok = False
    return {"logits_to_keep": 1} if ok else {}
