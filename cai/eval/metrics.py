"""Small statistics for evaluation: rates with intervals, win rates, and reward-hacking probes.

All pure functions over plain lists, each with a worked example.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from cai.core.stats import wilson_interval


def rate(flags: Sequence[bool]) -> dict[str, float]:
    """A rate with its Wilson interval and count.

    >>> r = rate([True, False, False, True])
    >>> r["rate"], round(r["lo"], 4), round(r["hi"], 4), r["n"]
    (0.5, 0.15, 0.85, 4)
    """
    n = len(flags)
    k = sum(bool(f) for f in flags)
    lo, hi = wilson_interval(k, n)
    return {"rate": k / n if n else float("nan"), "lo": lo, "hi": hi, "n": n}


def win_rate(p_wins: Sequence[float]) -> dict[str, float]:
    """Mean of per-prompt win probabilities (ties count half) with a Wilson interval on the mean.

    >>> win_rate([1.0, 0.0, 0.5, 1.0])["rate"]
    0.625
    """
    n = len(p_wins)
    mean = sum(p_wins) / n if n else float("nan")
    lo, hi = wilson_interval(mean * n, n) if n else (0.0, 1.0)
    return {"rate": mean, "lo": lo, "hi": hi, "n": n}


def length_controlled_win_rate(p_wins: Sequence[float], len_diff: Sequence[float], steps: int = 50) -> float:
    """Win rate with the length effect regressed out.

    Fits ``p(win) = sigmoid(a + b * d)`` by Newton's method, where ``d`` is the
    length difference (model minus baseline, in characters) divided by its
    standard deviation, and reports ``sigmoid(a)``: the win rate the model would
    have if its answers were as long as the baseline's. Soft targets (probabilities)
    are fine. With no length spread it is the plain mean.

    Worked example: wins only when longer → the fitted intercept is near 0, so
    the length-controlled rate is near 0.5 although the raw rate is 0.5 too; when
    a model wins as often while *shorter*, the controlled rate rises above the raw one.

    >>> round(length_controlled_win_rate([1, 1, 0, 0], [10, 20, -10, -20]), 2)
    0.5
    >>> raw = [1, 1, 1, 0]
    >>> length_controlled_win_rate(raw, [-30, -20, 10, 25]) > sum(raw) / 4
    True
    """
    n = len(p_wins)
    if n == 0:
        return float("nan")
    mean_d = sum(len_diff) / n
    sd = math.sqrt(sum((d - mean_d) ** 2 for d in len_diff) / n)
    if sd == 0:
        return sum(p_wins) / n
    xs = [d / sd for d in len_diff]  # not centred: the intercept is the win rate at zero length difference
    a = b = 0.0
    ridge = 1e-3  # keeps Newton finite when the data are separable
    for _ in range(steps):
        ga = gb = haa = hab = hbb = 0.0
        for y, x in zip(p_wins, xs):
            p = 1 / (1 + math.exp(-(a + b * x)))
            w = p * (1 - p)
            ga += y - p
            gb += (y - p) * x
            haa += w
            hab += w * x
            hbb += w * x * x
        ga -= ridge * a
        gb -= ridge * b
        haa += ridge
        hbb += ridge
        det = haa * hbb - hab * hab
        if det <= 1e-12:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a + da, b + db
        if abs(da) + abs(db) < 1e-9:
            break
    return 1 / (1 + math.exp(-a))


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation (nan when either side is constant or n < 2).

    >>> pearson([1, 2, 3], [2, 4, 6])
    1.0
    >>> pearson([1, 2, 3], [3, 2, 1])
    -1.0
    """
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return float("nan")
    return round(sxy / math.sqrt(sxx * syy), 12)


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def boilerplate(answers: Sequence[str], n: int = 6, min_share: float = 0.2, top: int = 5) -> dict:
    """How much of the answers is shared boilerplate.

    A phrase (``n`` consecutive words) is boilerplate when it occurs in at least
    ``min_share`` of the answers (and in at least 3). Returns the share of answers
    containing any boilerplate phrase, and the most common phrases.

    >>> answers = ["I cannot help with that but here is a safe alternative for you"] * 3 + ["Paris is the capital"]
    >>> out = boilerplate(answers)
    >>> out["rate"], out["phrases"][0][1]
    (0.75, 3)
    """
    grams = [_ngrams(a, n) for a in answers]
    counts = Counter(g for gs in grams for g in gs)
    threshold = max(3, math.ceil(min_share * len(answers)))
    common = {g for g, c in counts.items() if c >= threshold}
    hit = [bool(gs & common) for gs in grams]
    phrases = [(" ".join(g), c) for g, c in counts.most_common() if g in common][:top]
    return {"rate": sum(hit) / len(answers) if answers else float("nan"), "phrases": phrases, "n": len(answers)}
