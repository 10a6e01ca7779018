"""The evaluation report: markdown table, self-contained HTML with its plots, and the metrics behind it."""

from __future__ import annotations

import base64
import re

import pytest

from cai.cli.eval import results_table
from cai.eval.compare import compare
from cai.eval.metrics import boilerplate, length_controlled_win_rate, rate
from cai.eval.report import plot_harm_vs_overrefusal, spread_overlaps, to_html, to_markdown
from cai.eval.run import mark_no_signal
from cai.eval.schema import JudgeSignal, SampleAnswer, SamplePrompt, TrainingSample
from tests.helpers.data import summary


def test_markdown_has_one_column_per_model_and_every_figure():
    md = to_markdown(summary())
    assert "| figure | base | dpo |" in md
    assert "harmful compliance" in md and "40.0% [" in md and "20.0% [" in md
    assert "near chance" in md and "harmless" in md


def test_html_is_self_contained_with_three_plots():
    page = to_html(summary())
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 3
    for data in imgs:
        assert base64.b64decode(data).startswith(b"\x89PNG")
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    table = re.search(r'<table id="summary">.*?</table>', page, re.S).group(0)
    assert table.count("<td>") == 3 * table.count("<tr><td>") == 3 * 12  # label + one cell per model


def test_plots_are_skipped_without_data():
    s = summary()
    s.curves, s.labeler_audit = {}, None
    assert len(re.findall(r"data:image/png", to_html(s))) == 1


def test_rate_and_lc_win_rate_examples():
    assert rate([True] * 3 + [False])["rate"] == 0.75
    assert abs(length_controlled_win_rate([0.5] * 4, [1, 2, 3, 4]) - 0.5) < 0.2
    assert boilerplate([])["n"] == 0


CONSTANT = JudgeSignal(judge="harm", method="harm-rubric", model="default", n=80, mean=0.462, score_sd=0.004,
                       signal=False, reason="judge scores constant: sd 0.004")
AUDITED = JudgeSignal(judge="harm", method="harm-rubric", model="default", n=80, mean=0.4, score_sd=0.2,
                      audit={"kind": "judge",
                             "accuracy": {"k": 102, "n": 200, "rate": 0.51, "lo": 0.45, "hi": 0.57}},
                      signal=False, reason="judge audit: 51% [45, 57] agreement on 200 human pairs")


@pytest.mark.parametrize("judge", [CONSTANT, AUDITED], ids=["constant", "audit-at-chance"])
def test_a_judge_without_signal_prints_no_signal_everywhere(judge):
    s = summary()
    s.judges = {"harm": judge}
    mark_no_signal(s)
    shown = f"no signal ({judge.reason})"
    text = results_table(s)
    harm_line = next(ln for ln in text.splitlines() if ln.startswith("harmful compliance"))
    assert harm_line.count(shown) == 2 and "%" not in harm_line.replace(judge.reason, "")
    assert next(ln for ln in text.splitlines() if ln.startswith("mean judge p(harmful)")).count(shown) == 2
    md, page = to_markdown(s), to_html(s)
    md_harm = next(ln for ln in md.splitlines() if ln.startswith("| harmful compliance"))
    assert md_harm.count(shown) == 2 and "40.0%" not in md_harm
    html_harm = re.search(r"<tr><td>harmful compliance.*?</tr>", page).group(0)
    assert html_harm.count(shown) == 2 and "40.0%" not in html_harm and 'class="nosignal"' in html_harm
    for doc in (md, page):
        assert "Judges on this run" in doc and "NO SIGNAL" in doc
    assert "refusal on red-team prompts (detector) | 60.0% [" in md  # the detector's figures stay


def test_a_judge_with_signal_prints_rates_and_says_so():
    s = summary()
    s.judges = {"harm": JudgeSignal(judge="harm", method="harm-rubric", n=80, mean=0.4, score_sd=0.21,
                                    signal=True),
                "helpfulness": JudgeSignal(judge="helpfulness", method="helpfulness", n=40, mean=0.55,
                                           score_sd=0.3, signal=True)}
    mark_no_signal(s)
    md = to_markdown(s)
    assert "no signal" not in md and "40.0% [" in md
    assert "sd 0.210" in md and "not audited against human labels" in md and "not audited on this run" in md


def test_an_in_sample_refusal_audit_says_its_figures_are_optimistic():
    s = summary()
    audit = {"n": 1105, "accuracy": 0.976, "precision": 0.974, "recall": 0.979}
    s.judges = {"refusal": JudgeSignal(judge="refusal", method="rules+classifier", audit=audit)}
    md = to_markdown(s)
    assert "audited accuracy 98%" in md and "In-sample" not in md
    s.judges["refusal"].audit = {**audit, "in_sample": True, "in_sample_rows": {"k": 1105, "n": 1105,
                                                                                "rate": 1.0}}
    md = to_markdown(s)
    assert "In-sample: 100% of those answers trained the shipped classifier" in md
    assert "held-out accuracy 0.944" in md  # the card's held-out figures beside the optimistic ones


def test_old_summary_without_judges_says_they_are_unaudited():
    md = to_markdown(summary())
    assert "were not recorded" in md


def hostile_summary():
    s = summary()
    evil = "<script>alert('x')</script> ```"
    s.samples = [SamplePrompt(set="redteam", prompt_id="abc123",
                              prompt=[{"role": "user", "content": f"Q {evil}"}],
                              answers=[SampleAnswer(model="base", text=f"I can't help with that. {evil}",
                                                    refused=True, rule="cannot", score=0.12,
                                                    score_name="p(harmful)"),
                                       SampleAnswer(model="dpo", text="", refused=True, rule="empty")])]
    s.training_data = [TrainingSample(name="preferences", path="label/preferences.jsonl", kind="preferences",
                                      rows=120, examples=[{"line": 7,
                                                           "prompt": [{"role": "user", "content": evil}],
                                                           "chosen": "kind <b>", "rejected": "rude",
                                                           "p_chosen": 0.71, "position_consistent": False}])]
    return s


def test_side_by_side_and_training_data_are_shown_and_escaped():
    s = hostile_summary()
    page, md = to_html(s), to_markdown(s)
    assert 'id="samples"' in page and 'id="training-data"' in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the page's own image check
    assert "refused (rule: cannot); p(harmful) 0.12" in page and "(empty answer)" in page
    assert "p_chosen 0.71, position consistent: no" in page and "kind &lt;b&gt;" in page
    assert "## Answers side by side" in md and "## Training data (sample)" in md
    fence = next(ln for ln in md.splitlines() if ln.startswith("````"))
    assert fence == "````text"  # longer than the ``` inside the answer: shown verbatim
    assert "120 rows, preferences" in md


def test_regression_is_red_in_html_and_bold_in_markdown():
    s = summary()
    s.baseline = "base"
    flags = {"base": {"refusal": {f"p{i}": i < 16 for i in range(20)}},
             "dpo": {"refusal": {f"p{i}": i < 4 for i in range(20)}}}
    s.comparisons = compare(s, flags)
    page, md = to_html(s), to_markdown(s)
    row = re.search(r'<tr class="regression">(.*?)</tr>', page).group(1)
    assert "refusal" in row and "worse!" in row and "#b00020" in page
    assert "| refusal | dpo | 20% | -60 pts [" in md and "**worse!**" in md


def test_overlapping_points_are_spread_and_still_plotted():
    assert spread_overlaps([(0.5, 0.5), (0.505, 0.5), (0.5, 0.51)])[2] == (0.012, 0.0, 2, 3)
    s = summary()
    s.models[1].harm, s.models[1].over_refusal = s.models[0].harm, s.models[0].over_refusal  # same point
    data = plot_harm_vs_overrefusal(s)
    assert base64.b64decode(data).startswith(b"\x89PNG")
