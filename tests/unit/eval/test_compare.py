"""Before/after with significance: paired-interval arithmetic by hand, verdicts, the `worse!` mark,
regressions."""

from __future__ import annotations

import math
import random

import pytest

from cai.core.stats import bootstrap_mean, paired_difference, wilson_interval
from cai.eval.compare import (
    FIGURES,
    compare,
    compare_figure,
    format_comparison_table,
    regressions,
)
from cai.eval.schema import (
    Comparison,
    EvalSummary,
    HackingEval,
    HarmEval,
    Interval,
    JudgeSignal,
    ModelEval,
    OverRefusalEval,
)


def flags(*bits: int) -> dict[str, bool]:
    return {f"p{i}": bool(b) for i, b in enumerate(bits)}


# ------------------------------------------------------------------------------------ paired intervals


def test_newcombe_paired_interval_by_hand():
    # 20 prompts: a=6 refused by both, b=3 only by the model, c=0 only by the baseline, d=11 by neither
    x = [1] * 9 + [0] * 11
    y = [1] * 6 + [0] * 14
    r = paired_difference(x, y)
    l1, u1 = wilson_interval(9, 20)
    l2, u2 = wilson_interval(6, 20)
    phi = (6 * 11 - 3 * 0 - 20 / 2) / math.sqrt(9 * 11 * 6 * 14)  # continuity-corrected (ad > bc)
    lo = 0.15 - math.sqrt((0.45 - l1) ** 2 - 2 * phi * (0.45 - l1) * (u2 - 0.3) + (u2 - 0.3) ** 2)
    hi = 0.15 + math.sqrt((u1 - 0.45) ** 2 - 2 * phi * (u1 - 0.45) * (0.3 - l2) + (0.3 - l2) ** 2)
    assert r["diff"] == pytest.approx(0.15) and r["lo"] == pytest.approx(lo) and r["hi"] == pytest.approx(hi)
    assert (r["a"], r["b"], r["c"], r["d"]) == (6, 3, 0, 11)
    assert r["lo"] == pytest.approx(-0.0321, abs=1e-4) and r["hi"] == pytest.approx(0.3163, abs=1e-4)
    # bc > ad: no correction
    r = paired_difference([1, 1, 0, 0, 1], [0, 0, 1, 1, 1])
    l1, u1 = wilson_interval(3, 5)
    l2, u2 = wilson_interval(3, 5)
    phi = (1 * 0 - 2 * 2) / math.sqrt(3 * 2 * 3 * 2)
    assert r["lo"] == pytest.approx(-math.sqrt((0.6 - l1) ** 2 - 2 * phi * (0.6 - l1) * (u2 - 0.6)
                                               + (u2 - 0.6) ** 2))


def test_pairing_narrows_the_interval_when_models_agree_on_most_prompts():
    # 40 prompts: 15 refused by both, 20 by neither, 5 only by the model: strongly correlated pairs
    x = [1] * 15 + [0] * 20 + [1] * 5
    y = [1] * 15 + [0] * 20 + [0] * 5
    paired = paired_difference(x, y)
    # the same marginals with the pairs broken up (phi = 0: the unpaired Newcombe interval)
    l1, u1 = wilson_interval(20, 40)
    l2, u2 = wilson_interval(15, 40)
    d = 0.125
    unpaired = (d - math.hypot(0.5 - l1, u2 - 0.375), d + math.hypot(u1 - 0.5, 0.375 - l2))
    assert paired["hi"] - paired["lo"] < 0.6 * (unpaired[1] - unpaired[0])
    assert paired["lo"] > 0 > unpaired[0]  # significant only when the pairing is used


def test_newcombe_edge_cases():
    same = paired_difference([1, 0, 1, 0], [1, 0, 1, 0])  # no pair disagrees: still not a point
    assert same["diff"] == 0 and same["lo"] < -0.2 and same["hi"] > 0.2
    none = paired_difference([0] * 5, [0] * 5)
    assert none["diff"] == 0 and none["lo"] <= 0 <= none["hi"] and -1 <= none["lo"] and none["hi"] <= 1
    allflip = paired_difference([1] * 8, [0] * 8)
    assert allflip["diff"] == 1 and allflip["lo"] > 0.5 and allflip["hi"] == 1
    with pytest.raises(ValueError):
        paired_difference([1], [1, 0])


def test_newcombe_covers_the_true_difference_about_95_percent():
    rng = random.Random(0)
    hits, sims = 0, 1000
    for _ in range(sims):  # p(model)=0.5, p(base)=0.35, correlated through a shared prompt effect
        xs, ys = [], []
        for _ in range(60):
            hard = rng.random() < 0.3
            xs.append(rng.random() < (0.9 if hard else 0.33))
            ys.append(rng.random() < (0.8 if hard else 0.157))
        r = paired_difference(xs, ys)
        true = (0.3 * 0.9 + 0.7 * 0.33) - (0.3 * 0.8 + 0.7 * 0.157)
        hits += r["lo"] <= true <= r["hi"]
    assert 0.925 <= hits / sims <= 0.98


def test_bootstrap_mean_of_paired_differences():
    diffs = [0.1, 0.2, 0.3, 0.2, 0.1, 0.3, 0.2, 0.2]
    r = bootstrap_mean(diffs)
    assert r["mean"] == pytest.approx(0.2) and r["n"] == 8
    assert 0.1 <= r["lo"] < 0.2 < r["hi"] <= 0.3
    assert bootstrap_mean(diffs) == r  # seeded
    smooth = [0.01 * i for i in range(30)]
    assert bootstrap_mean(smooth, seed=1) != bootstrap_mean(smooth, seed=2)
    const = bootstrap_mean([0.5] * 10)
    assert const["lo"] == const["hi"] == 0.5


# ----------------------------------------------------------------------------------------- verdicts


def model(name: str, refusal: float = 0.5) -> ModelEval:
    iv = Interval(rate=refusal, lo=0.0, hi=1.0, n=20)
    return ModelEval(name=name, model=name, harm=HarmEval(refusal=iv, harmful=iv, mean_p_harmful=0.4),
                     over_refusal=OverRefusalEval(safe_refusal=iv), hacking=HackingEval(boilerplate_rate=0.1),
                     mean_answer_chars=100.0)


def summary(**judges) -> EvalSummary:
    return EvalSummary(models=[model("base"), model("dpo")], baseline="base", judges=judges)


OBS = {
    "base": {"refusal": flags(*[1] * 16 + [0] * 4), "harm": flags(*[1] * 12 + [0] * 8),
             "p(harm)": {f"p{i}": 0.6 for i in range(20)}, "over-refusal": flags(*[0] * 20),
             "chars": {f"p{i}": 100.0 for i in range(20)}},
    "dpo": {"refusal": flags(*[1] * 4 + [0] * 16), "harm": flags(*[1] * 2 + [0] * 18),
            "p(harm)": {f"p{i}": 0.2 + 0.01 * i for i in range(20)},
            "over-refusal": flags(*[1] * 12 + [0] * 8),
            "chars": {f"p{i}": 150.0 + i for i in range(20)}, "win rate": {f"p{i}": 0.8 for i in range(20)},
            "KL": {f"p{i}": 2.0 + 0.1 * i for i in range(20)}},
}


def by_figure(cs: list[Comparison]) -> dict[str, Comparison]:
    return {c.figure: c for c in cs}


def test_verdicts_follow_each_figures_direction():
    cs = by_figure(compare(summary(), OBS))
    assert set(cs) == set(FIGURES)
    assert cs["harm"].verdict == "better" and cs["harm"].diff == pytest.approx(-0.5)
    assert cs["p(harm)"].verdict == "better" and cs["p(harm)"].method == "paired-bootstrap"
    assert cs["refusal"].verdict == "worse" and cs["refusal"].aim  # the constitution's aim regressed
    assert cs["over-refusal"].verdict == "worse" and not cs["over-refusal"].aim
    assert cs["win rate"].verdict == "better" and cs["win rate"].base_value == 0.5
    assert cs["chars"].verdict == "-" and cs["chars"].diff == pytest.approx(59.5)
    assert cs["KL"].verdict == "-" and cs["KL"].base_value == 0.0
    assert cs["LC win"].verdict == "not measured" and cs["boilerplate"].verdict == "not measured"
    assert all(c.lo <= c.diff <= c.hi for c in cs.values() if c.diff is not None)


def test_no_detectable_change_when_the_interval_includes_zero():
    obs = {"base": {"refusal": flags(1, 1, 0, 0, 1)}, "dpo": {"refusal": flags(1, 0, 0, 1, 1)}}
    c = by_figure(compare(summary(), obs))["refusal"]
    assert c.diff == 0 and c.lo < 0 < c.hi and c.verdict == "no detectable change"


def test_worse_on_the_aim_is_marked_and_listed():
    s = summary()
    s.comparisons = compare(s, OBS)
    table = format_comparison_table(s)
    refusal = next(line for line in table.splitlines() if line.startswith("refusal"))
    dpo_refusal = table.splitlines()[table.splitlines().index(refusal) + 1]
    assert "worse!" in dpo_refusal and "-60 pts" in dpo_refusal
    over = table.splitlines()[[ln.split()[0] if ln.split() else "" for ln in table.splitlines()].index(
        "over-refusal") + 1]
    assert over.rstrip().endswith("worse") and "worse!" not in over  # not the constitution's aim
    lines = regressions(s)
    assert (len(lines) == 1 and lines[0].startswith("dpo: refusal on red-team prompts")
            and "80% vs 20%" not in lines[0])
    assert "20% vs 80%" in lines[0] and "-60 pts" in lines[0]


def test_no_regression_when_nothing_got_worse_on_the_aim():
    obs = {"base": {"refusal": flags(*[1] * 10), "harm": flags(*[1] * 10)},
           "dpo": {"refusal": flags(*[1] * 10), "harm": flags(*[0] * 10), "chars": {"p0": 1e6}}}
    s = summary()
    s.comparisons = compare(s, obs)
    assert regressions(s) == []
    assert "worse" not in format_comparison_table(s)


def test_a_judge_without_signal_gives_no_signal_not_a_verdict():
    harm = JudgeSignal(judge="harm", method="harm-rubric", n=80, score_sd=0.004, signal=False,
                       reason="judge scores constant: sd 0.004")
    s = summary(harm=harm)
    s.comparisons = compare(s, OBS)
    cs = by_figure(s.comparisons)
    assert (cs["harm"].verdict == "no signal" and cs["harm"].diff is None
            and cs["p(harm)"].verdict == "no signal")
    assert cs["refusal"].verdict == "worse"  # the detector's figures stay
    table = format_comparison_table(s)
    assert "no signal (judge scores constant: sd 0.004)" in table
    harm_rows = [ln for ln in table.splitlines() if "no signal" in ln]
    assert len(harm_rows) == 4 and not any("%" in ln.split("no signal")[0].split()[-1] for ln in harm_rows)
    assert [r for r in regressions(s) if "harm" in r.split(":")[1]] == []


def test_table_of_several_summaries_and_of_an_old_eval_json():
    s = summary()
    s.comparisons = compare(s, OBS)
    two = format_comparison_table([s, s], ["a/", "b/"])
    assert "a/dpo" in two and "b/base" in two
    old = EvalSummary.model_validate({"models": [model("base").model_dump(), model("dpo").model_dump()]})
    assert old.comparisons == [] and old.judges == {}
    text = format_comparison_table(old)  # figures without verdicts, nothing invented
    assert "refusal" in text and "worse" not in text and "better" not in text


def test_lc_and_fixed_figures():
    r = compare_figure(FIGURES["LC win"], {f"p{i}": (0.9, 10.0 * i) for i in range(10)}, None)
    assert r["value"] > 0.5 and r["lo"] <= r["diff"] <= r["hi"] and r["base_value"] == 0.5
    assert compare_figure(FIGURES["harm"], {"p0": True}, {"p1": True})["n"] == 0  # nothing paired
