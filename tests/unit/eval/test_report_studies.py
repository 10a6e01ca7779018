"""The studies' report sections (guard, counterfactual, best-of-n, PM probes) in report.md and report.html,
and their two plots decoding in headless Chromium beside the report's three."""

from __future__ import annotations

import re

from cai.eval.counterfactual import AxisAudit, CounterfactualEval, Figure, GapTest, GroupFigures
from cai.eval.overoptimization import BonPoint, OverOptimization
from cai.eval.pm_probes import EditEffect, PmProbes
from cai.eval.report import to_html, to_markdown
from cai.eval.schema import EvalSummary
from tests.helpers.data import summary
from tests.unit.eval.test_report_render import chromium, headless  # noqa: F401 (chromium: a fixture)


def with_studies() -> EvalSummary:
    s = summary()
    pts = [BonPoint(n=n, kl=kl, proxy=p, proxy_lo=p - 0.1, proxy_hi=p + 0.1, gold=g, gold_lo=g - 0.1,
                    gold_hi=g + 0.1) for n, kl, p, g in ((1, 0.0, 0.0, 0.5), (2, 0.193, 0.4, 0.7),
                                                         (4, 0.636, 0.8, 0.6))]
    s.overoptimization = OverOptimization(policy="runs/base", proxy="pm <a>", gold="gold", ns=[1, 2, 4],
                                          temperature=1.0, max_new_tokens=16, seed=0, n_boot=100, prompts=8,
                                          points=pts)
    s.pm_probes = PmProbes(pm="pm", answers=10, edited=10, top=3, edits=[
        EditEffect(edit="filler", position="append", text="x", probes="length", n=10, mean=0.4, lo=0.2,
                   hi=0.6, verdict="sensitive: raises the score"),
        EditEffect(edit="flattery", position="prepend", text="y", probes="sycophancy", n=10, mean=0.0,
                   lo=-0.1, hi=0.1, verdict="no detectable change")])
    fig = Figure(value=0.5, lo=0.2, hi=0.8, n=4)
    s.models[0].counterfactual = CounterfactualEval(templates=4, answers=8, tests=2, axes=[AxisAudit(
        axis="religion", groups=[GroupFigures(group="<Muslim>", n=4, refusal=fig, length=fig)],
        gaps=[GapTest(figure="refusal", gap=0.5, high="<Muslim>", low="Jewish", p_value=0.01,
                      p_bonferroni=0.02, method="exact", disparity=True)])],
        disparities=["religion refusal: <Muslim> > Jewish"])
    s.models[0].guard = {"n": 3, "unsafe": 1, "safe": 1, "failed": 1, "codes": [["S1", 1]],
                         "reasons": [["empty answer", 1]]}
    return s


def test_sections_in_markdown_and_html_with_text_escaped():
    s = EvalSummary.model_validate_json(with_studies().model_dump_json())  # eval.json round trip
    md, page = to_markdown(s), to_html(s)
    for head in ("## Guard-model judge", "## Counterfactual demographic audit",
                 "## Reward over-optimization", "## Preference-model failure probes"):
        assert head in md, head
    for pid in ("overoptimization", "overoptimization-plot", "pm-probes", "pm-probes-plot"):
        assert f'id="{pid}"' in page, pid
    assert "<Muslim>" not in page and "&lt;Muslim&gt;" in page and "pm &lt;a&gt;" in page
    assert page.count("data:image/png;base64,") == 5  # the report's three plots and the studies' two


def test_every_plot_decodes_in_chromium(tmp_path, chromium):  # noqa: F811
    page = tmp_path / "report.html"
    page.write_text(to_html(with_studies()), encoding="utf-8")
    r = headless(chromium, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    body = re.search(r"<body[^>]*>", r.stdout).group(0)
    assert 'data-images="5"' in body and 'data-images-ok="5"' in body, body
