"""The labeler audit: its math against hand-computed values, its report, and `cai audit labeler` end to
end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cai.audit.labeler import (
    CHANCE_VERDICT,
    audit_labels,
    expected_calibration_error,
    format_audit,
    plot_reliability,
    reliability_bins,
    verdict,
)
from cai.core.records import Message
from cai.core.stats import proportion, wilson_interval
from cai.stages.label.labeler import LabelConfig, label_records
from cai.stages.label.pairs import make_pair
from tests.helpers.fakes import FakeJudge, constitution
from tests.helpers.paths import ROOT


def test_wilson_interval_matches_hand_computed_values():
    # 8/10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.716738, half 1.416021 * sqrt(0.025604) = 0.226582
    lo, hi = wilson_interval(8, 10, z=1.96)
    assert lo == pytest.approx(0.490156, abs=2e-6) and hi == pytest.approx(0.943320, abs=2e-6)
    # 0/10: lower bound 0, upper z^2 / (n + z^2) = 3.8416 / 13.8416
    lo, hi = wilson_interval(0, 10, z=1.96)
    assert lo == 0.0 and hi == pytest.approx(3.8416 / 13.8416, abs=1e-9)
    lo, hi = wilson_interval(10, 10, z=1.96)
    assert hi == 1.0 and lo == pytest.approx(10 / 13.8416, abs=1e-9)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@given(st.integers(min_value=1, max_value=2000), st.data())
def test_wilson_interval_contains_the_rate_and_narrows_with_n(n, data):
    k = data.draw(st.integers(min_value=0, max_value=n))
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo4, hi4 = wilson_interval(4 * k, 4 * n)
    assert hi4 - lo4 <= hi - lo + 1e-12


def test_ece_on_a_small_example():
    conf = [0.55, 0.58, 0.65, 0.95, 0.95]
    correct = [True, False, False, True, True]
    bins = reliability_bins(conf, correct, bins=5)
    assert [b["n"] for b in bins] == [2, 1, 0, 0, 2]
    assert bins[0]["confidence"] == pytest.approx(0.565) and bins[0]["accuracy"] == 0.5
    # |0.5 - 0.565| * 2 + |0 - 0.65| * 1 + |1 - 0.95| * 2, over 5
    assert expected_calibration_error(bins) == pytest.approx((0.13 + 0.65 + 0.10) / 5)
    assert reliability_bins([1.0], [True], bins=5)[-1]["n"] == 1
    assert expected_calibration_error(reliability_bins([], [], 5)) is None


def test_verdict_says_plainly_when_near_chance():
    assert verdict(proportion(52, 100)) == CHANCE_VERDICT
    assert "more often than chance" in verdict(proportion(80, 100))
    assert "disagrees" in verdict(proportion(20, 100))
    assert "nothing" in verdict(proportion(0, 0))


def _human_pairs(n: int) -> list:
    # answer_a is the human-chosen one; the fake judge prefers the answer containing "good"
    out = []
    for i in range(n):
        chosen = f"a good answer {i}" if i % 4 else f"a poor answer {i}"  # the judge disagrees on every 4th
        rejected = f"another poor answer {i}" if i % 4 else f"another good answer {i}"
        out.append(make_pair([Message(role="user", content=f"q{i}")], chosen, rejected))
    return out


def test_audit_numbers_on_a_judge_with_known_behaviour(tmp_path):
    labels = list(label_records(_human_pairs(20), FakeJudge(strength=2.0, bias=3.0), constitution(),
                                LabelConfig(principles_per_pair=2)))
    audit = audit_labels(labels, bins=5)
    a = audit["agreement"]
    assert audit["labelled"] == 20 and audit["failed"] == 0
    # bias 3 > strength 2: shown as (A) the human-chosen always wins the read; shown as (B) never
    assert a["a_first"]["rate"] == 1.0 and a["b_first"]["rate"] == 0.0
    assert a["both"]["k"] == 15  # averaged: the judge's own preference, which matches humans on 15 of 20
    assert a["both"]["lo"] == pytest.approx(wilson_interval(15, 20)[0])
    assert audit["flip_rate"]["rate"] == 1.0
    assert audit["option_a_rate"]["rate"] == 1.0
    assert sum(b["n"] for b in audit["reliability"]) == 20
    assert all(d["n"] >= 1 for d in audit["per_principle"].values())
    assert (sum(d["k"] for d in audit["per_principle"].values())
            <= sum(d["n"] for d in audit["per_principle"].values()))
    assert audit["brier"] > 0 and audit["ece"] is not None
    text = format_audit(audit)
    assert "both orders averaged" in text and "75.0%" in text and "verdict:" in text
    png = plot_reliability(audit, tmp_path / "rel.png")
    assert png.read_bytes().startswith(b"\x89PNG")
    json.dumps(audit)  # serialisable as is


def test_audit_of_failed_labels_reports_no_agreement(tmp_path):
    labels = list(label_records(_human_pairs(3), FakeJudge(scoring=False, letter=lambda chat: "?"),
                                constitution()))
    audit = audit_labels(labels)
    assert audit["failed"] == 3 and audit["agreement"]["both"]["rate"] is None
    assert "nothing to compare" in audit["verdict"]
    assert plot_reliability(audit, tmp_path / "empty.png").exists()
    assert "n/a" in format_audit(audit)


def _rounded(x):
    """Floats to 6 decimals, recursively: CPU matmuls under load may differ in the last bits."""
    if isinstance(x, float):
        return round(x, 6)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def test_cli_audit_is_deterministic_for_a_seed(tmp_path, tiny_model_dir, shared_data):
    def run(out: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cai", "audit", "labeler", "--pairs",
             str(shared_data / "hh_harmless_pairs_dev.jsonl"),
             "--feedback-model", str(tiny_model_dir), "--limit", "4", "--seed", "3",
             "--principles-per-pair", "2", "--no-few-shot", "-o", str(out)],
            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)

    r1, r2 = run(tmp_path / "a"), run(tmp_path / "b")
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert "agreement with the human choice" in r1.stdout and "verdict:" in r1.stdout
    a1, a2 = (json.loads((tmp_path / d / "audit.json").read_text()) for d in ("a", "b"))
    for key in ("agreement", "flip_rate", "reliability", "ece", "per_principle", "verdict"):
        assert _rounded(a1[key]) == _rounded(a2[key]), key  # same numbers to reporting precision
    assert a1["pairs"] == 4 and a1["settings"]["seed"] == 3
    assert (tmp_path / "a" / "reliability.png").read_bytes().startswith(b"\x89PNG")
    assert len((tmp_path / "a" / "labels.jsonl").read_text().splitlines()) == 4
    r3 = run(tmp_path / "a")  # resumes: nothing left to label
    assert r3.returncode == 0 and "labelling" not in r3.stderr
