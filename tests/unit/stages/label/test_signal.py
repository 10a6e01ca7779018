"""label_signal on real label stats from fake judges: consistent, position-biased, weak, tied, and audited."""

from __future__ import annotations

import math

import pytest

from cai.audit.labeler import audit_labels
from cai.core.records import Message
from cai.core.stats import proportion
from cai.stages.label.labeler import label_records
from cai.stages.label.outputs import Filters, label_stats, select_preferences
from cai.stages.label.pairs import make_pair
from cai.stages.label.signal import LabelSignal, audit_reasons, label_signal
from tests.helpers.fakes import FakeJudge, constitution


def pairs(n: int) -> list:
    out = []
    for i in range(n):
        good, bad = "a " + "good " * (1 + i % 3) + f"answer {i}", f"a poor answer {i}"
        a, b = (good, bad) if i % 2 else (bad, good)
        out.append(make_pair([Message(role="user", content=f"question {i}")], a, b))
    return out


class GradedJudge(FakeJudge):
    """Prefers 'good', more strongly the more often it is said (so p_chosen varies across pairs)."""

    def logit_a(self, chat) -> float:
        from tests.helpers.fakes import last_options

        a, b = last_options(chat)
        return self.strength * (a.count("good") - b.count("good")) + self.bias


def stats_of(judge, n: int = 24) -> dict:
    recs = list(label_records(pairs(n), judge, constitution()))
    return label_stats(recs, *select_preferences(recs, Filters()))


def test_a_consistent_judge_has_signal():
    v = label_signal(stats_of(GradedJudge(strength=1.0)))
    assert v.signal and v.reasons == []
    assert v.figures["position_consistency_rate"] == 1.0 and v.figures["p_chosen_sd"] > 0.02


def test_a_consistent_judge_with_one_confidence_still_has_signal():
    stats = stats_of(FakeJudge(strength=2.0))
    assert stats["p_chosen_sd"] < 1e-9  # every pair the same p_chosen: no spread there ...
    # ... but its reads follow the answers, so it is no "nearly constant" judge
    assert label_signal(stats).signal


def test_a_position_biased_judge_has_none():
    stats = stats_of(FakeJudge(strength=0.5, bias=3.0))  # always leans to (A), content barely matters
    v = label_signal(stats)
    assert not v.signal
    assert any(r.startswith("position consistency 0.0%") for r in v.reasons)
    assert any("answer (A)" in r for r in v.reasons)


def test_a_judge_stuck_near_one_half_has_none():
    v = label_signal(stats_of(FakeJudge(strength=0.005)))  # consistent, but p(A) within 0.002 of 0.5
    assert not v.signal and v.figures["position_consistency_rate"] == 1.0
    assert v.reasons == [f"p(option A) nearly constant over reads (sd "
                         f"{v.figures['p_option_a_sd']:.4f} < 0.02)",
                         "p_chosen bunched near a coin flip (mean 0.501, sd 0.0000)"]


def test_labels_bunched_near_a_coin_flip_have_none():
    """p_chosen's spread as measured on the embedded 135M model's labels of 40 hh-rlhf pairs (sd 0.0145, mean
    0.517); the other figures are set healthy so that only the spread rule can fire."""
    stats = {"labelled": 40, "position_consistency_rate": 0.7, "p_option_a_sd": 0.074, "tie_rate": 0.0,
             "option_a_rate": 0.5, "p_chosen_sd": 0.0145, "mean_p_chosen": 0.517}
    v = label_signal(stats)
    assert not v.signal and v.reasons == ["p_chosen bunched near a coin flip (mean 0.517, sd 0.0145)"]
    # confident and consistent
    assert label_signal({**stats, "mean_p_chosen": 0.88, "p_chosen_sd": 0.0}).signal


def test_a_letter_judge_that_always_writes_a_has_none():
    judge = FakeJudge(scoring=False, letter=lambda chat: "A")
    v = label_signal(stats_of(judge, 12))
    assert not v.signal and any("exact ties" in r for r in v.reasons)


def test_too_few_pairs():
    v = label_signal(stats_of(GradedJudge(strength=1.0), 4))
    assert not v.signal and v.reasons == ["only 4 labelled pair(s), fewer than 10"]
    assert label_signal(stats_of(GradedJudge(strength=1.0), 4), min_pairs=4).signal


def test_the_audit_interval_decides_when_given():
    stats = stats_of(GradedJudge(strength=1.0))
    # an audit of the same judge on human pairs where the human-chosen answer is the 'good' one
    human = [make_pair([Message(role="user", content=f"h{i}")], f"a good reply {i}", f"a rude reply {i}")
             for i in range(30)]
    audit = audit_labels(list(label_records(human, GradedJudge(strength=1.0), constitution())))
    assert audit["agreement"]["both"]["lo"] > 0.5
    assert label_signal(stats, audit).signal
    assert label_signal(stats, audit).figures["audit_agreement"]["k"] == 30
    chance = {"agreement": {"both": proportion(16, 30)}}
    v = label_signal(stats, chance)
    assert not v.signal and "includes 50% (chance)" in v.reasons[0]
    below = {"agreement": {"both": proportion(3, 30)}}
    assert "below chance" in audit_reasons(below)[0]


def test_verdict_is_json_ready_and_missing_figures_are_not_reasons():
    v = label_signal({"labelled": 20})
    assert v == LabelSignal(True, [], v.figures) and v.to_dict()["signal"] is True
    assert all(x is None or not math.isnan(x) for x in v.figures.values() if not isinstance(x, int))


@pytest.mark.parametrize("consistency, ok", [(0.5, False), (0.51, True)])
def test_consistency_threshold_is_inclusive(consistency, ok):
    stats = {"labelled": 20, "position_consistency_rate": consistency, "p_option_a_sd": 0.2, "tie_rate": 0.0,
             "option_a_rate": 0.5}
    assert label_signal(stats).signal is ok
