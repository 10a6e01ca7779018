"""Padding token lists into batches (left for generation and prefixes, right for continuations)."""

from __future__ import annotations

from collections.abc import Sequence


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: str = "cpu"):
    """Left-pad token lists into ``ids [B, T]`` and ``mask [B, T]``.

    >>> ids, mask = left_pad([[5, 6], [7]], 0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6], [0, 7]], [[1, 1], [0, 1]])
    """
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: str = "cpu"):
    """Right-pad token lists into ``ids [B, T]`` and ``mask [B, T]``.

    >>> ids, mask = right_pad([[5, 6], [7]], 0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6], [7, 0]], [[1, 1], [1, 0]])
    """
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def length_buckets(lengths: Sequence[int], max_rows: int, max_padding: float) -> list[list[int]]:
    """Group item indices, shortest first, into batches of at most ``max_rows`` that waste little on padding.

    A batch is padded to its longest item; an item joins the current batch only
    while the padding stays at most ``max_padding`` of the padded batch. On a
    CPU a prompt of a few hundred tokens already keeps the matmuls busy, so
    padding is pure waste there; a GPU gains more from wide batches.

    >>> length_buckets([10, 300, 12, 11, 290], max_rows=8, max_padding=0.1)
    [[0, 3, 2], [4, 1]]
    >>> length_buckets([5, 5, 5], max_rows=2, max_padding=0.0)
    [[0, 1], [2]]
    >>> length_buckets([], 4, 0.1)
    []
    """
    out: list[list[int]] = []
    total = 0
    for i in sorted(range(len(lengths)), key=lambda k: lengths[k]):
        n = lengths[i]
        if out and len(out[-1]) < max_rows:
            rows = len(out[-1]) + 1
            if rows * n - (total + n) <= max_padding * rows * n:
                out[-1].append(i)
                total += n
                continue
        out.append([i])
        total = n
    return out
