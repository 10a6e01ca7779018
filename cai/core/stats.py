"""Confidence intervals for proportions, shared by the audits and the evaluation."""

from __future__ import annotations

import math
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
