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


LC_RIDGE = 2.0  # L2 penalty on the length coefficient: a N(0, 1/2) prior, sd 0.71 in log-odds
LC_INTERCEPT_RIDGE = 1e-4  # keeps the intercept finite when every answer wins (or loses)
LC_BOOT = 1000  # bootstrap resamples for the interval


def length_term(len_diff: Sequence[float]) -> list[float]:
    """AlpacaEval 2's length feature ``tanh(d / sd(d))``: bounded in (-1, 1), 0 at equal length.

    ``d`` is the model's answer length minus the baseline's (characters); the scale is
    the standard deviation of the differences (no scaling when they are all equal).

    >>> [round(u, 3) for u in length_term([-10, 0, 10])]
    [-0.841, 0.0, 0.841]
    >>> length_term([5, 5])
    [0.0, 0.0]
    """
    n = len(len_diff)
    if n == 0:
        return []
    mean = sum(len_diff) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in len_diff) / n)
    if sd == 0:
        return [0.0] * n
    return [math.tanh(d / sd) for d in len_diff]


def fit_length_glm(y, u, ridge: float = LC_RIDGE, steps: int = 100):
    """Penalised logistic fit of ``p(win) = sigmoid(a + b * u)`` for a batch of data sets at once (Newton).

    Shapes: ``y`` and ``u`` are ``[B, n]`` (B data sets of n prompts; soft targets in
    [0, 1] allowed); returns ``(a, b)``, each ``[B]``. The objective is the summed
    log-likelihood minus ``ridge * b**2 / 2`` (and a negligible ``1e-4 * a**2 / 2``).

    >>> import numpy as np
    >>> a, b = fit_length_glm(np.array([[1.0, 1.0, 0.0, 0.0]]), np.array([[0.5, 0.9, -0.5, -0.9]]))
    >>> round(float(a[0]), 6), float(b[0]) > 0
    (0.0, True)
    """
    import numpy as np

    y, u = np.asarray(y, dtype=float), np.asarray(u, dtype=float)
    a = np.zeros(y.shape[0])
    b = np.zeros(y.shape[0])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(a[:, None] + b[:, None] * u)))  # [B, n]
        w = p * (1.0 - p)
        ga = (y - p).sum(axis=1) - LC_INTERCEPT_RIDGE * a
        gb = ((y - p) * u).sum(axis=1) - ridge * b
        haa = w.sum(axis=1) + LC_INTERCEPT_RIDGE
        hab = (w * u).sum(axis=1)
        hbb = (w * u * u).sum(axis=1) + ridge
        det = haa * hbb - hab * hab  # > 0: both ridges make the Hessian positive definite
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a + da, b + db
        if float(np.max(np.abs(da) + np.abs(db))) < 1e-10:
            break
    return a, b


def length_controlled_win_rate(p_wins: Sequence[float], len_diff: Sequence[float],
                               ridge: float = LC_RIDGE) -> float:
    """Win rate with the length effect regressed out, in AlpacaEval 2's form.

    Fits ``p(win) = sigmoid(a + b * tanh(d / sd(d)))`` (``d``: model minus baseline
    length, characters) with an L2 (ridge) penalty on ``b`` and reports ``sigmoid(a)``:
    the predicted win rate at equal length (``tanh(0) = 0``). The tanh keeps a very
    long answer from weighing more than a long one, and the ridge keeps ``b`` near 0
    unless the data show a length effect, so a model that is *always* longer (no
    answer near equal length to anchor the intercept) gets about its raw win rate
    instead of a wild extrapolation to zero length. Soft targets are fine.

    Worked examples: wins exactly when longer, lengths symmetric: the intercept is 0,
    so 0.5 while the raw rate is 0.5 too; a judge that always prefers the longer
    answer of a model that is longer 3 times in 4 inflates the raw rate to 0.75, and
    the controlled rate pulls it back towards 0.5; a model always longer by about the
    same amount stays near its raw rate (0.75 here).

    >>> length_controlled_win_rate([1, 1, 0, 0], [10, 20, -10, -20])
    0.5
    >>> lc = length_controlled_win_rate([1, 1, 1, 0] * 5, [30, 20, 10, -25] * 5)
    >>> 0.5 < lc < 0.75
    True
    >>> round(length_controlled_win_rate([1, 1, 1, 0], [300, 310, 305, 295]), 2)
    0.75
    """
    n = len(p_wins)
    if n == 0:
        return float("nan")
    a, _ = fit_length_glm([list(p_wins)], [length_term(len_diff)], ridge)
    return round(1.0 / (1.0 + math.exp(-float(a[0]))), 12)


def length_controlled_interval(p_wins: Sequence[float], len_diff: Sequence[float], *, ridge: float = LC_RIDGE,
                               n_boot: int = LC_BOOT, seed: int = 0) -> dict[str, float]:
    """:func:`length_controlled_win_rate` with a 95% percentile bootstrap interval over prompts (seeded).

    Each resample draws prompts with replacement, keeps the length scale of the full
    data, and refits; ``rate`` is the fit on all the data.

    >>> r = length_controlled_interval([1, 0, 1, 1, 0, 1, 1, 0], [5, -3, 8, 2, -6, 1, 9, -2])
    >>> r["lo"] <= r["rate"] <= r["hi"], r["n"]
    (True, 8)
    """
    import numpy as np

    n = len(p_wins)
    rate_ = length_controlled_win_rate(p_wins, len_diff, ridge)
    if n == 0:
        return {"rate": rate_, "lo": 0.0, "hi": 1.0, "n": 0}
    y, u = np.asarray(p_wins, dtype=float), np.asarray(length_term(len_diff))
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))  # [n_boot, n]
    a, _ = fit_length_glm(y[idx], u[idx], ridge)
    rates = 1.0 / (1.0 + np.exp(-a))
    lo, hi = np.quantile(rates, [0.025, 0.975])
    return {"rate": rate_, "lo": float(min(lo, rate_)), "hi": float(max(hi, rate_)), "n": n}


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

    >>> answers = (["I cannot help with that but here is a safe alternative for you"] * 3
    ...            + ["Paris is the capital"])
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
    return {"rate": sum(hit) / len(answers) if answers else float("nan"), "phrases": phrases,
            "n": len(answers), "flags": hit}
