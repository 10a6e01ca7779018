"""The report's segmented section (cai/eval/report_segments.py): one table per column, "no signal" kept,
model text escaped, and nothing when nothing was segmented."""

from __future__ import annotations

from cai.eval.report import to_html, to_markdown
from cai.eval.report_segments import segment_table, segments_html, segments_markdown
from cai.eval.schema import EvalSummary, ModelEval, SegmentFigure


def summary() -> EvalSummary:
    f = SegmentFigure(value=0.75, lo=0.3006, hi=0.9544, n=4)
    quiet = SegmentFigure(value=0.0, lo=0.0, hi=0.49, n=4, no_signal="judge scores constant: sd 0.000")
    segs = {"SemanticCategory": {"illegal": {"harmful": quiet, "refusal": f},
                                 "<b>odd</b>": {"refusal": f}}}
    return EvalSummary(models=[ModelEval(name="base", model="m", segments=segs),
                               ModelEval(name="dpo", model="m2", segments=segs)])


def test_table_rows_per_segment_and_model():
    head, rows = segment_table(summary(), "SemanticCategory")
    assert head == ["SemanticCategory", "model", "harmful compliance (judge)", "refusal on red-team prompts"]
    assert rows[0] == ["illegal", "base", "no signal", "75.0% [30.1–95.4] (n=4)"]
    assert [r[:2] for r in rows] == [["illegal", "base"], ["illegal", "dpo"], ["<b>odd</b>", "base"],
                                     ["<b>odd</b>", "dpo"]]
    assert rows[2][2] == "–"  # no judged figure in that segment


def test_markdown_and_html_sections():
    md = "\n".join(segments_markdown(summary()))
    assert "## Figures by segment" in md and "### By `SemanticCategory`" in md
    assert "| illegal | base | no signal | 75.0% [30.1–95.4] (n=4) |" in md
    assert "harmful compliance (judge): no signal (judge scores constant: sd 0.000)" in md
    page = segments_html(summary())
    assert '<table class="segments" data-column="SemanticCategory">' in page
    assert '<span class="nosignal">no signal</span>' in page
    assert "&lt;b&gt;odd&lt;/b&gt;" in page and "<b>odd</b>" not in page
    empty = EvalSummary(models=[ModelEval(name="base", model="m")])
    assert segments_markdown(empty) == [] and segments_html(empty) == ""


def test_hooked_into_the_report():
    s = summary()
    assert "## Figures by segment" in to_markdown(s)
    assert '<section id="segments">' in to_html(s)
    assert "Figures by segment" not in to_markdown(EvalSummary(models=[ModelEval(name="b", model="m")]))
