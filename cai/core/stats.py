"""Confidence intervals for proportions, shared by the audits and the evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054


def wilson_interval(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (95% by default); ``(0, 1)`` when ``n == 0``.

    ``k`` may be fractional (a sum of soft wins). Worked example: 8 of 10 → centre
    (8 + z²/2)/(10 + z²) = 0.7156, half-width z·sqrt(0.8·0.2/10 + z²/400)/(1 + z²/10)
    = 0.2398 → (0.4902, 0.9433).

    >>> [round(x, 4) for x in wilson_interval(8, 10, 1.96)]
    [0.4902, 0.9433]
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be between 0 and n={n}")
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (0.0 if k == 0 else max(0.0, center - half)), (1.0 if k == n else min(1.0, center + half))


def proportion(k: int, n: int) -> dict[str, Any]:
    """``{"k", "n", "rate", "lo", "hi"}`` with the Wilson 95% interval.

    >>> proportion(8, 10)["rate"], proportion(0, 0)["rate"]
    (0.8, None)
    """
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None, "lo": lo, "hi": hi}


def paired_difference(x: Sequence[bool], y: Sequence[bool], z: float = Z95) -> dict[str, Any]:
    """Difference of two paired proportions ``mean(x) - mean(y)`` with Newcombe's hybrid-score interval.

    ``x[i]`` and ``y[i]`` are two models' yes/no on the same item ``i`` (e.g. "refused
    prompt i"). Newcombe (1998, method 10) combines the two Wilson intervals and the
    correlation of the pairs: with ``a`` = both yes, ``b`` = only x, ``c`` = only y,
    ``d`` = neither, ``p1 = (a+b)/n``, ``p2 = (a+c)/n``, Wilson ``[l1, u1]`` and ``[l2, u2]``,
    ``phi = (ad - bc) / sqrt((a+b)(c+d)(a+c)(b+d))`` (0 when a margin is empty; when
    ``ad > bc`` Newcombe's continuity correction uses ``max(ad - bc - n/2, 0)`` instead,
    which keeps the interval from collapsing to a point when no pair disagrees)::

        lo = (p1 - p2) - sqrt((p1-l1)^2 - 2 phi (p1-l1)(u2-p2) + (u2-p2)^2)
        hi = (p1 - p2) + sqrt((u1-p1)^2 - 2 phi (u1-p1)(p2-l2) + (p2-l2)^2)

    Pairing matters: the same prompts answered by two models are correlated, and the
    paired interval is narrower than the unpaired one when they are.
    Worked example: 20 prompts, a=6, b=3, c=0, d=11: p1 = 0.45, p2 = 0.30, difference 0.15;
    Wilson [0.2582, 0.6579] and [0.1455, 0.5190]; phi = (66 - 0 - 20/2)/sqrt(9*11*6*14) = 0.6141;
    lo = 0.15 - sqrt(0.1918^2 - 2*0.6141*0.1918*0.2190 + 0.2190^2) = -0.0321,
    hi = 0.15 + sqrt(0.2079^2 - 2*0.6141*0.2079*0.1545 + 0.1545^2) = 0.3163
    (the same counts unpaired, phi = 0, give the wider [-0.1411, 0.4090]).

    >>> r = paired_difference([1] * 9 + [0] * 11, [1] * 6 + [0] * 14)
    >>> round(r["diff"], 4), round(r["lo"], 4), round(r["hi"], 4), r["n"], (r["a"], r["b"], r["c"], r["d"])
    (0.15, -0.0321, 0.3163, 20, (6, 3, 0, 11))
    >>> paired_difference([], [])["diff"] is None
    True
    """
    if len(x) != len(y):
        raise ValueError(f"paired data need equal lengths, got {len(x)} and {len(y)}")
    n = len(x)
    a = sum(1 for u, v in zip(x, y) if u and v)
    b = sum(1 for u, v in zip(x, y) if u and not v)
    c = sum(1 for u, v in zip(x, y) if v and not u)
    d = n - a - b - c
    out: dict[str, Any] = {"diff": None, "lo": None, "hi": None, "n": n, "a": a, "b": b, "c": c, "d": d}
    if n == 0:
        return out
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, z)
    l2, u2 = wilson_interval(a + c, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    if cross > 0:  # Newcombe's continuity correction of phi (only when ad > bc)
        cross = max(cross - n / 2, 0.0)
    phi = cross / math.sqrt(margins) if margins else 0.0
    lo_half = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    hi_half = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    out.update(diff=diff, lo=max(-1.0, diff - lo_half), hi=min(1.0, diff + hi_half))
    return out


def bootstrap_mean(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> dict[str, Any]:
    """Mean of ``values`` with a percentile bootstrap interval (``n_boot`` resamples, fixed ``seed``).

    For paired data pass the per-item differences (model minus baseline on prompt ``i``):
    resampling prompts keeps each pair together, which is the paired bootstrap.
    Worked example: differences [1, 2, 3, 4] have mean 2.5; every resample's mean lies
    between 1 and 4, and the middle 95% of 2000 of them is about [1.5, 3.5].

    >>> r = bootstrap_mean([1.0, 2.0, 3.0, 4.0])
    >>> r["mean"], 1.0 <= r["lo"] <= 2.0, 3.0 <= r["hi"] <= 4.0, r["n"]
    (2.5, True, True, 4)
    >>> bootstrap_mean([1.0, 2.0, 3.0, 4.0]) == bootstrap_mean([1.0, 2.0, 3.0, 4.0])  # seeded
    True
    >>> bootstrap_mean([])["mean"] is None
    True
    """
    import numpy as np

    n = len(values)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)  # [n_boot]
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return {"mean": float(arr.mean()), "lo": float(lo), "hi": float(hi), "n": n}


NO_SIGNAL_SD = 0.02
"""A judge whose scores vary less than this (standard deviation over everything it judged) has no signal:
what it says does not depend on what it reads. Shared by the audits, the evaluation and the stage gates."""
