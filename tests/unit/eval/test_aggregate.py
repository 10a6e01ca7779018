"""Judge signal: a constant judge, an audit that includes chance, and the consistency of the two reads."""

from __future__ import annotations

import pytest

from cai.core.records import Provenance
from cai.eval.aggregate import SIGNAL_SD, audit_reason, judge_signal, read_consistent, refusal_signal
from cai.eval.schema import EvalJudgement


def jd(i: int, value: float | None, kind: str = "harm-rubric", reads=None) -> EvalJudgement:
    return EvalJudgement(id=f"j{i}", kind=kind, model="m", answer_id=f"a{i}", prompt_id=f"p{i}", value=value,
                         reads=reads or [], provenance=Provenance())


def audit(k: int, n: int, lo: float, hi: float, **extra) -> dict:
    return {"kind": "judge", "accuracy": {"k": k, "n": n, "rate": k / n, "lo": lo, "hi": hi}, **extra}


def test_constant_judge_has_no_signal():
    s = judge_signal("harm", [jd(i, 0.462 + 0.001 * (i % 3)) for i in range(80)] + [jd(99, None)])
    assert s.signal is False and s.n == 80 and s.failures == 1
    assert s.score_sd == pytest.approx(0.00081, abs=1e-5) and s.reason == "judge scores constant: sd 0.001"


def test_spread_above_threshold_is_signal_and_threshold_is_documented():
    vals = [0.1, 0.9] * 20
    s = judge_signal("harm", [jd(i, v) for i, v in enumerate(vals)])
    assert s.signal is True and s.reason is None and s.score_sd == pytest.approx(0.4)
    near = [0.5 - SIGNAL_SD, 0.5 + SIGNAL_SD] * 5  # sd exactly at the threshold counts as signal
    assert judge_signal("harm", [jd(i, v) for i, v in enumerate(near)]).signal is True
    assert judge_signal("harm", [jd(0, 0.3)]).signal is None  # one score: nothing measured


def test_audit_including_chance_is_no_signal_even_with_spread():
    a = audit(102, 200, 0.451, 0.569)
    s = judge_signal("harm", [jd(i, v) for i, v in enumerate([0.1, 0.9] * 10)], audit=a)
    assert s.signal is False and s.reason == "judge audit: 51% [45, 57] agreement on 200 human pairs"
    assert s.audit == a
    good = audit(170, 200, 0.79, 0.89)
    assert judge_signal("harm", [jd(i, v) for i, v in enumerate([0.1, 0.9] * 10)], audit=good).signal is True
    # the audit's own verdict counts
    assert audit_reason(audit(170, 200, 0.79, 0.89, signal=False)) is not None


def test_both_reasons_are_given():
    s = judge_signal("harm", [jd(i, 0.5) for i in range(10)], audit=audit(100, 200, 0.43, 0.57))
    assert (s.reason
            == "judge scores constant: sd 0.000; judge audit: 50% [43, 57] agreement on 200 human pairs")


def test_consistency_of_the_two_reads():
    rubric = [jd(0, 0.75, reads=[{"question": "harm", "p_yes": 0.8}, {"question": "safe", "p_yes": 0.3}]),
              jd(1, 0.5, reads=[{"question": "harm", "p_yes": 0.8}, {"question": "safe", "p_yes": 0.8}])]
    assert [read_consistent(j) for j in rubric] == [True, False]
    s = judge_signal("harm", rubric)
    assert s.consistency.rate == 0.5 and s.consistency.n == 2 and s.consistency_kind == "polarities"
    pair = [jd(2, 0.8, "helpfulness", [{"principle_id": "h", "order": "ab", "p_option_a": 0.9},
                                       {"principle_id": "h", "order": "ba", "p_option_a": 0.3}])]
    s = judge_signal("helpfulness", pair)
    assert s.consistency.rate == 1.0 and s.consistency_kind == "answer orders"
    assert read_consistent(jd(3, None, "helpfulness")) is None


def test_refusal_detector_is_never_hidden():
    r = refusal_signal({"kind": "refusal", "accuracy": 0.9, "precision": 0.8, "recall": 0.7})
    assert r.signal is None and r.audit["recall"] == 0.7 and r.method == "rules+classifier"
