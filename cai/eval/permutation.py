"""The largest gap between groups' means, and its permutation-test p-value.

Data: one value per item (1/0 for "refused", a length, a judge score), each item in
a group ("Muslim", "Hindu"...) and a block (the template it was filled from). The
statistic is the **largest gap**, ``max_g mean(g) - min_g mean(g)``, taken over the
groups present.

Under the null hypothesis the group does not matter: inside each block, the values
would have come out the same whichever group filled the slot, so the group labels
can be shuffled *within each block* (a stratified permutation: a template that every
group finds hard stays hard, and cannot fake a gap). The p-value is the share of
arrangements whose largest gap is at least the observed one:

* **exact** when the number of distinct arrangements is at most ``exact_limit``: every
  one is enumerated (the observed one included), ``p = #{gap' >= gap} / #arrangements``;
* else **Monte Carlo** with ``n_perm`` seeded shuffles, ``p = (1 + #{gap' >= gap}) / (1 + n_perm)``
  (never 0: the observed arrangement is one of the possible ones; Phipson & Smyth 2010).

Because the statistic is the maximum over groups, the test already accounts for
having many groups (no per-pair correction is needed inside one axis).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

PERMUTATIONS = 2000
EXACT_LIMIT = 5000
TOL = 1e-9  # a permuted gap within this of the observed one counts as "at least as large"


def largest_gap(values: Sequence[float], groups: Sequence[str]) -> tuple[float, str, str]:
    """``(gap, highest group, lowest group)`` of the groups' means (ties: the first group listed wins).

    Worked example: A has [1, 0] (mean 0.5), B [1, 1] (1.0), C [0, 0] (0.0): gap 1.0, B over C.

    >>> largest_gap([1, 0, 1, 1, 0, 0], ["A", "A", "B", "B", "C", "C"])
    (1.0, 'B', 'C')
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for v, g in zip(values, groups):
        sums[g] = sums.get(g, 0.0) + float(v)
        counts[g] = counts.get(g, 0) + 1
    means = {g: sums[g] / counts[g] for g in sums}
    hi = max(means, key=lambda g: means[g])
    lo = min(means, key=lambda g: means[g])
    return round(means[hi] - means[lo], 12), hi, lo


def arrangements(groups: Sequence[str], blocks: Sequence[str]) -> int:
    """How many distinct group labellings the within-block shuffle can produce (product of multinomials).

    >>> arrangements(["A", "B", "A", "B"], ["t1", "t1", "t2", "t2"]), arrangements(["A", "A", "B"], ["t"] * 3)
    (4, 3)
    """
    total = 1
    for b in dict.fromkeys(blocks):
        labels = [g for g, k in zip(groups, blocks) if k == b]
        n = math.factorial(len(labels))
        for g in set(labels):
            n //= math.factorial(labels.count(g))
        total *= n
    return total


def _gaps(vals: Any, labels: Any, n_groups: int) -> Any:
    """Largest gap of each row of a label matrix ``labels`` [P, n] (ints < n_groups) over ``vals`` [n]."""
    import numpy as np

    rows = labels.shape[0]
    flat = (labels + n_groups * np.arange(rows)[:, None]).ravel()  # [P * n] bins row-major
    sums = np.bincount(flat, weights=np.tile(vals, rows), minlength=rows * n_groups).reshape(rows, n_groups)
    counts = np.bincount(flat, minlength=rows * n_groups).reshape(rows, n_groups)
    present = counts[0] > 0  # a within-block shuffle keeps every group's size
    means = sums[:, present] / counts[:, present]  # [P, groups present]
    return means.max(axis=1) - means.min(axis=1)


def distinct_permutations(items: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Each distinct ordering of a multiset once, in sorted order (never the n! orderings of repeats).

    >>> list(distinct_permutations([1, 0, 0]))
    [(0, 0, 1), (0, 1, 0), (1, 0, 0)]
    """
    counts: dict[int, int] = {}
    for x in items:
        counts[x] = counts.get(x, 0) + 1
    keys = sorted(counts)
    prefix: list[int] = []

    def rec(left: int) -> Iterator[tuple[int, ...]]:
        if left == 0:
            yield tuple(prefix)
            return
        for k in keys:
            if counts[k]:
                counts[k] -= 1
                prefix.append(k)
                yield from rec(left - 1)
                prefix.pop()
                counts[k] += 1

    yield from rec(len(items))


def _exact_labels(labels: Sequence[int], blocks: Sequence[str]) -> Any:
    """Every distinct within-block arrangement of ``labels``, as a matrix [arrangements, n]."""
    import numpy as np

    keys = list(dict.fromkeys(blocks))
    where = [[i for i, k in enumerate(blocks) if k == b] for b in keys]
    options = [list(distinct_permutations([labels[i] for i in idx])) for idx in where]
    out = np.empty((math.prod(len(o) for o in options), len(labels)), dtype=np.int64)
    for r, combo in enumerate(itertools.product(*options)):
        for idx, arr in zip(where, combo):
            out[r, idx] = arr
    return out


def permutation_gap_test(values: Sequence[float], groups: Sequence[str], blocks: Sequence[str] | None = None,
                         *, n_perm: int = PERMUTATIONS, seed: int = 0,
                         exact_limit: int = EXACT_LIMIT) -> dict[str, Any]:
    """The largest gap between groups and its permutation p-value (shuffles within ``blocks``).

    Returns ``{"gap", "high", "low", "p_value", "method", "n_perm", "n"}``; ``gap`` None when
    fewer than two groups have values.

    Worked example (exact): two templates, each filled for groups A and B; A is refused
    both times (1), B never (0). Observed gap 1 - 0 = 1. Shuffling labels within each
    template gives 2 x 2 = 4 arrangements: unchanged (gap 1), one template swapped
    (A = [0, 1], B = [1, 0]: gap 0, twice) and both swapped (gap 1). So p = 2/4 = 0.5:
    two templates cannot show a disparity, however stark.

    >>> r = permutation_gap_test([1, 0, 1, 0], ["A", "B", "A", "B"], ["t1", "t1", "t2", "t2"])
    >>> r["gap"], r["high"], r["low"], r["p_value"], r["method"]
    (1.0, 'A', 'B', 0.5, 'exact')

    With 30 templates the same pattern is rare under shuffling: p is at its Monte Carlo
    floor 1/(1 + n_perm); a group-blind pattern gives gap 0 and p = 1.

    >>> vals, grp = [1, 0] * 30, ["A", "B"] * 30
    >>> blk = [f"t{i // 2}" for i in range(60)]
    >>> r = permutation_gap_test(vals, grp, blk, n_perm=999)
    >>> r["method"], r["p_value"], permutation_gap_test([1, 1] * 30, grp, blk)["p_value"]
    ('monte-carlo', 0.001, 1.0)
    """
    import numpy as np

    if len(values) != len(groups) or (blocks is not None and len(blocks) != len(values)):
        raise ValueError("values, groups and blocks differ in length")
    blocks = list(blocks) if blocks is not None else ["all"] * len(values)
    out: dict[str, Any] = {"gap": None, "high": None, "low": None, "p_value": None, "method": None,
                           "n_perm": 0, "n": len(values)}
    names = list(dict.fromkeys(groups))
    if len(names) < 2:
        return out
    gap, high, low = largest_gap(values, groups)
    out.update(gap=gap, high=high, low=low)
    index = {g: i for i, g in enumerate(names)}
    labels = [index[g] for g in groups]
    vals = np.asarray(values, dtype=float)  # [n]
    count = arrangements(groups, blocks)
    if count <= exact_limit:
        gaps = _gaps(vals, _exact_labels(labels, blocks), len(names))
        out.update(p_value=round(float(np.mean(gaps >= gap - TOL)), 12), method="exact", n_perm=count)
        return out
    rng = np.random.default_rng(seed)
    lab = np.asarray(labels, dtype=np.int64)
    perm = np.empty((n_perm, len(labels)), dtype=np.int64)  # [n_perm, n]
    for b in dict.fromkeys(blocks):
        idx = np.flatnonzero(np.asarray(blocks, dtype=object) == b)
        order = np.argsort(rng.random((n_perm, len(idx))), axis=1)  # a random permutation per row
        perm[:, idx] = lab[idx][order]
    hits = int(np.sum(_gaps(vals, perm, len(names)) >= gap - TOL))
    out.update(p_value=round((1 + hits) / (1 + n_perm), 12), method="monte-carlo", n_perm=n_perm)
    return out
