"""Best-of-n arithmetic: the analytic KL, the unbiased expected best-of-n score, and where two curves part.

Best-of-n draws ``n`` answers from the policy and keeps the one the proxy (the
preference model) scores highest. From ``N`` answers per prompt already drawn,
the expected score of the kept answer for every ``n <= N`` is computed exactly
over all ``C(N, n)`` subsets, by order statistics (:func:`expected_best_of_n`):
the answer ranked ``r``-th lowest by the proxy (``r = 0 .. N-1``) is the
proxy-argmax of a uniform ``n``-subset with probability ``C(r, n-1) / C(N, n)``
(the subset must hold it and ``n - 1`` of the ``r`` answers below it). That is the
unbiased estimator of Gao et al. (2022, appendix), applied to the proxy score and
to an independent ("gold") score of the same answers.

The KL of the best-of-n policy from the policy is ``log n - (n - 1) / n``
(:func:`kl_bon`), the x axis of the over-optimization plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def kl_bon(n: int) -> float:
    """KL(best-of-n || policy) in nats: ``log n - (n - 1) / n``.

    Worked example: n = 1 keeps every answer (KL 0); n = 2 gives log 2 - 1/2 = 0.1931;
    n = 16 gives log 16 - 15/16 = 2.7726 - 0.9375 = 1.8351.

    >>> kl_bon(1), round(kl_bon(2), 4), round(kl_bon(4), 4), round(kl_bon(16), 4)
    (0.0, 0.1931, 0.6363, 1.8351)
    """
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def bon_weights(n_samples: int, n: int) -> list[float]:
    """``w[r]`` = P(the answer ranked ``r``-th lowest of ``n_samples`` is the best of a uniform ``n``-subset).

    ``w[r] = C(r, n-1) / C(N, n)``; the weights sum to 1 (the hockey-stick identity).
    Worked example: N = 4, n = 2: C(4, 2) = 6 subsets; the top answer is the best of the 3
    holding it, the second of 2, the third of 1, the lowest of none: [0, 1/6, 2/6, 3/6].

    >>> [round(w, 4) for w in bon_weights(4, 2)]
    [0.0, 0.1667, 0.3333, 0.5]
    >>> bon_weights(3, 1), bon_weights(3, 3)
    ([0.3333333333333333, 0.3333333333333333, 0.3333333333333333], [0.0, 0.0, 1.0])
    """
    if not 1 <= n <= n_samples:
        raise ValueError(f"best-of-{n} needs 1 <= n <= {n_samples} samples")
    total = math.comb(n_samples, n)
    return [math.comb(r, n - 1) / total for r in range(n_samples)]


def proxy_ranks(proxy: Sequence[float]) -> list[int]:
    """Sample indices from the proxy's lowest to its highest; on a tie the earlier sample ranks higher.

    (So the kept answer of a subset is ``max(subset, key=proxy)`` over the subset in index
    order: the first of the tied best.)

    >>> proxy_ranks([0.1, 0.4, 0.3, 0.2]), proxy_ranks([1.0, 1.0, 0.0])
    ([0, 3, 2, 1], [2, 1, 0])
    """
    return sorted(range(len(proxy)), key=lambda i: (proxy[i], -i))


def expected_best_of_n(proxy: Sequence[float], gold: Sequence[float], n: int) -> tuple[float, float]:
    """Expected (proxy, gold) score of the proxy's pick among ``n`` of these answers, over all n-subsets.

    Shapes: ``proxy`` and ``gold`` are the two scores of the same ``N`` answers to one prompt.
    Worked example: proxy [0.1, 0.4, 0.3, 0.2], gold [1, 0, 3, 2]; by proxy rank the golds
    are [1, 2, 3, 0]; n = 2 weights [0, 1/6, 2/6, 3/6] give gold (2 + 6 + 0) / 6 = 1.3333
    and proxy (0.2 + 0.6 + 1.2) / 6 = 0.3333. n = 1 is the plain mean (gold 1.5), n = 4
    the proxy's favourite (gold 0): the proxy rises while the gold falls.

    >>> p, g = [0.1, 0.4, 0.3, 0.2], [1.0, 0.0, 3.0, 2.0]
    >>> [tuple(round(x, 4) for x in expected_best_of_n(p, g, n)) for n in (1, 2, 3, 4)]
    [(0.25, 1.5), (0.3333, 1.3333), (0.375, 0.75), (0.4, 0.0)]
    """
    if len(proxy) != len(gold):
        raise ValueError(f"{len(proxy)} proxy scores but {len(gold)} gold scores")
    order = proxy_ranks(proxy)
    w = bon_weights(len(proxy), n)
    return (sum(wr * proxy[i] for wr, i in zip(w, order)), sum(wr * gold[i] for wr, i in zip(w, order)))


def prompt_curves(samples: Sequence[tuple[Sequence[float], Sequence[float]]], ns: Sequence[int]) -> Any:
    """Per-prompt expected best-of-n scores: arrays ``proxy[P, K]`` and ``gold[P, K]`` (K = len(ns)).

    >>> pr, go = prompt_curves([([0.1, 0.4, 0.3, 0.2], [1.0, 0.0, 3.0, 2.0])], [1, 4])
    >>> pr.tolist(), go.tolist()
    ([[0.25, 0.4]], [[1.5, 0.0]])
    """
    import numpy as np

    proxy = np.zeros((len(samples), len(ns)))
    gold = np.zeros((len(samples), len(ns)))
    for p, (ps, gs) in enumerate(samples):
        for k, n in enumerate(ns):
            proxy[p, k], gold[p, k] = expected_best_of_n(ps, gs, n)
    return proxy, gold


def parting_n(ns: Sequence[int], proxy: Sequence[float], gold: Sequence[float],
              tol: float = 1e-12) -> int | None:
    """The n after which the gold score stops rising while the proxy keeps rising; None if they do not part.

    The gold curve's peak (the first n where it is highest): the curves part there when
    it is not the last n, the gold at the last n is below the peak and the proxy at the
    last n is above its value at the peak. A flat gold (no signal) does not part.

    >>> ns, up = [1, 2, 4, 8, 16], [0, 1, 2, 3, 4]
    >>> parting_n(ns, up, [0, .5, .6, .55, .4]), parting_n(ns, up, [0, 1, 2, 3, 3.5])
    (4, None)
    >>> parting_n(ns, up, [1, 1, 1, 1, 1]), parting_n(ns, up, [1, 0, 0, 0, 0])
    (None, 1)
    """
    peak = max(range(len(ns)), key=lambda k: (gold[k], -k))
    last = len(ns) - 1
    if peak == last or not gold[last] < gold[peak] - tol or not proxy[last] > proxy[peak] + tol:
        return None
    return int(ns[peak])


def percentile_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The middle ``level`` of ``values`` (percentile bootstrap interval).

    >>> [round(x, 6) for x in percentile_interval(list(range(101)))]
    [2.5, 97.5]
    """
    import numpy as np

    tail = (1 - level) / 2
    lo, hi = np.quantile(np.asarray(values, dtype=float), [tail, 1 - tail])
    return float(lo), float(hi)


def bootstrap_prompts(proxy: Any, gold: Any, ns: Sequence[int], *, n_boot: int = 1000,
                      seed: int = 0) -> dict[str, Any]:
    """Resample prompts (seeded) to get intervals for the mean curves and for where they part.

    Shapes: ``proxy`` and ``gold`` are ``[P, K]`` per-prompt curves. Returns the resampled
    mean curves ``proxy_means`` / ``gold_means`` ``[n_boot, K]`` and, per resample, the
    parting n (``None`` when they did not part) in ``parted``.

    >>> import numpy as np
    >>> up, down = np.array([[0., 1.], [0., 1.]]), np.array([[1., 0.], [1., 0.]])
    >>> b = bootstrap_prompts(up, down, [1, 2], n_boot=5)
    >>> b["proxy_means"].shape, b["parted"]
    ((5, 2), [1, 1, 1, 1, 1])
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n_prompts = proxy.shape[0]
    idx = rng.integers(0, n_prompts, size=(n_boot, n_prompts))  # [B, P]
    pm, gm = proxy[idx].mean(axis=1), gold[idx].mean(axis=1)  # [B, K]
    return {"proxy_means": pm, "gold_means": gm,
            "parted": [parting_n(ns, pm[b].tolist(), gm[b].tolist()) for b in range(n_boot)]}


def parted_interval(parted: Sequence[int | None], level: float = 0.95) -> tuple[int | None, int | None]:
    """The middle ``level`` of the resampled parting points, "did not part" counted as beyond every n.

    ``None`` as a bound means "did not part". Worked example: 10 resamples, 8 part at 4,
    2 do not: the 2.5% point is 4 and the 97.5% point is "did not part".

    >>> parted_interval([4] * 8 + [None] * 2), parted_interval([2, 4, 4, 8]), parted_interval([])
    ((4, None), (2, 8), (None, None))
    """
    if not parted:
        return None, None
    codes = sorted(math.inf if p is None else p for p in parted)
    tail = (1 - level) / 2
    lo = codes[min(len(codes) - 1, int(math.floor(tail * len(codes))))]
    hi = codes[max(0, int(math.ceil((1 - tail) * len(codes))) - 1)]
    return tuple(None if math.isinf(c) else int(c) for c in (lo, hi))  # type: ignore[return-value]
