"""Derived label outputs: exact ties are dropped by default, the spread and tie figures, the signal line."""

from __future__ import annotations

import json

import pytest

from cai.core.records import Message
from cai.stages.label.labeler import LabelConfig, label_records, to_preference
from cai.stages.label.outputs import Filters, build_outputs, format_summary, label_stats, select_preferences
from cai.stages.label.pairs import make_pair
from tests.helpers.fakes import FakeJudge, constitution


def pairs(n: int) -> list:
    out = []
    for i in range(n):
        good, bad = f"a good answer {i}", f"a poor answer {i}"
        a, b = (good, bad) if i % 2 else (bad, good)
        out.append(make_pair([Message(role="user", content=f"question {i}")], a, b))
    return out


def always_a_letters(n: int) -> list:
    """Labels from a letter-writing reader that answers "A" whatever it is shown: every pair an exact tie."""
    judge = FakeJudge(scoring=False, letter=lambda chat: "A")
    return list(label_records(pairs(n), judge, constitution()))


def test_a_tie_used_to_become_a_preference_for_answer_a():
    recs = always_a_letters(4)
    assert all(r.status == "ok" and r.p_a == 0.5 for r in recs)
    pref = to_preference(recs[0])  # the labeler still turns a tie into answer_a chosen ...
    assert pref.chosen == recs[0].answer_a and pref.p_chosen == 0.5


def test_exact_ties_are_dropped_by_default_and_counted():
    recs = always_a_letters(4) + list(label_records(pairs(6)[4:], FakeJudge(strength=2.0), constitution()))
    kept, dropped = select_preferences(recs, Filters())
    assert len(kept) == 2 and dropped["ties"] == 4  # ... which the default filters no longer write
    assert all("good" in p.chosen[0].content for p in kept)
    stats = label_stats(recs, kept, dropped)
    assert stats["dropped"]["ties"] == 4 and stats["tie_rate"] == pytest.approx(4 / 6)
    kept_all, dropped_all = select_preferences(recs, Filters(keep_ties=True))
    assert len(kept_all) == 6 and dropped_all["ties"] == 0


def test_a_tie_is_dropped_before_the_confidence_filter():
    recs = always_a_letters(2)
    _, dropped = select_preferences(recs, Filters(min_confidence=0.6))
    assert dropped == {"ties": 2}


def test_a_near_tie_is_not_a_tie():
    judge = FakeJudge(strength=0.001)
    recs = list(label_records(pairs(2), judge, constitution()))
    assert all(r.p_a != 0.5 for r in recs)
    kept, dropped = select_preferences(recs, Filters())
    assert len(kept) == 2 and not dropped["ties"]


def test_spread_figures():
    recs = list(label_records(pairs(4), FakeJudge(strength=2.0), constitution()))
    stats = label_stats(recs, *select_preferences(recs, Filters()))
    assert stats["p_chosen_sd"] == pytest.approx(0.0, abs=1e-9)  # the same confidence for every pair
    assert stats["p_option_a_sd"] > 0.3  # but p(A) moves with the answers shown as (A)
    assert stats["tie_rate"] == 0.0


def test_build_outputs_writes_the_signal_verdict_and_the_summary_says_it(tmp_path):
    recs = always_a_letters(12)
    (tmp_path / "labels.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in recs))
    stats = build_outputs(tmp_path, [r.id for r in recs], Filters())
    assert stats["preferences"]["ai"] == 0 and stats["dropped"]["ties"] == 12
    assert stats["filters"]["keep_ties"] is False
    saved = json.loads((tmp_path / "stats.json").read_text())
    assert saved["signal"]["signal"] is False and saved["signal"] == stats["signal"]
    line = [x for x in format_summary(stats).splitlines() if x.startswith("labels carry signal")]
    assert line and line[0].startswith("labels carry signal: no (") and "ties" in line[0]


def test_good_labels_say_yes(tmp_path):
    recs = list(label_records(pairs(12), FakeJudge(strength=2.0), constitution(), LabelConfig(batch_size=4)))
    (tmp_path / "labels.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in recs))
    stats = build_outputs(tmp_path, [r.id for r in recs], Filters())
    assert stats["signal"]["signal"] is True and stats["preferences"]["ai"] == 12
    assert "labels carry signal: yes" in format_summary(stats)
