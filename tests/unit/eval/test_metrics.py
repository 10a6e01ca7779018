"""The length-controlled win rate in simulation: no wild extrapolation when one model is always longer."""

from __future__ import annotations

import math
import random

import pytest

from cai.eval.metrics import length_controlled_interval, length_controlled_win_rate, length_term

TRUE = 0.7
BAND = (0.55, 0.85)  # raw win rates of 60 prompts at 0.7 spread about +-0.12 (2 sd); allow that


def always_longer(seed: int, n: int = 60) -> tuple[list[float], list[float]]:
    """A model that wins 70% of the time whatever the length, and is always 100-400 characters longer."""
    rng = random.Random(seed)
    diffs = [rng.uniform(100, 400) for _ in range(n)]
    wins = [1.0 if rng.random() < TRUE else 0.0 for _ in range(n)]
    return wins, diffs


def unregularised_linear_fit(p_wins: list[float], len_diff: list[float]) -> float:
    """The method this replaced (a linear length term, d / sd(d), with a negligible ridge), as a yardstick:
    the simulation must be able to fail."""
    n = len(p_wins)
    mean = sum(len_diff) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in len_diff) / n)
    xs = [d / sd for d in len_diff]
    a = b = 0.0
    for _ in range(50):
        ga = gb = haa = hab = hbb = 0.0
        for y, x in zip(p_wins, xs):
            p = 1 / (1 + math.exp(-(a + b * x)))
            w = p * (1 - p)
            ga, gb = ga + y - p, gb + (y - p) * x
            haa, hab, hbb = haa + w, hab + w * x, hbb + w * x * x
        ga, gb, haa, hbb = ga - 1e-3 * a, gb - 1e-3 * b, haa + 1e-3, hbb + 1e-3
        det = haa * hbb - hab * hab
        a, b = a + (hbb * ga - hab * gb) / det, b + (haa * gb - hab * ga) / det
    return 1 / (1 + math.exp(-a))


def test_always_longer_model_stays_near_its_true_win_rate():
    estimates = [length_controlled_win_rate(*always_longer(seed)) for seed in range(8)]
    assert all(BAND[0] <= e <= BAND[1] for e in estimates), estimates
    assert abs(sum(estimates) / 8 - TRUE) < 0.05
    old = [unregularised_linear_fit(*always_longer(seed)) for seed in range(8)]
    assert not all(BAND[0] <= e <= BAND[1] for e in old), old  # the old fit extrapolates out of the band


def test_a_length_biased_judge_is_corrected_towards_the_truth():
    """The judge prefers longer answers (log-odds +1.5 * tanh(d / sd)); the model's true quality is even
    (0.5)."""
    raw, lc = [], []
    for seed in range(8):
        rng = random.Random(100 + seed)
        diffs = [rng.gauss(100, 150) for _ in range(200)]
        u = length_term(diffs)
        wins = [1.0 if rng.random() < 1 / (1 + math.exp(-1.5 * x)) else 0.0 for x in u]
        raw.append(sum(wins) / len(wins))
        lc.append(length_controlled_win_rate(wins, diffs))
    mean_raw, mean_lc = sum(raw) / 8, sum(lc) / 8
    assert mean_raw > 0.6 and abs(mean_lc - 0.5) < abs(mean_raw - 0.5) / 2


def test_interval_is_seeded_and_holds_the_estimate():
    wins, diffs = always_longer(0)
    r = length_controlled_interval(wins, diffs, seed=3)
    assert r == length_controlled_interval(wins, diffs, seed=3)
    assert r["lo"] <= r["rate"] <= r["hi"] and r["n"] == 60 and r["hi"] - r["lo"] < 0.4
    assert r["rate"] == pytest.approx(length_controlled_win_rate(wins, diffs))


def test_degenerate_inputs():
    # no length spread
    assert length_controlled_win_rate([0.6, 0.8], [10, 10]) == pytest.approx(0.7, abs=1e-3)
    assert 0.99 < length_controlled_win_rate([1.0] * 5, [1, 2, 3, 4, 5]) < 1.0  # every answer wins: finite
    assert math.isnan(length_controlled_win_rate([], []))
    assert length_controlled_interval([], [])["n"] == 0
