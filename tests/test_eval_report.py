"""The evaluation report: markdown table, self-contained HTML with its plots, and the metrics behind it."""

from __future__ import annotations

import base64
import re

from cai.core.records import ConstitutionRef
from cai.core.stats import wilson_interval
from cai.eval.metrics import boilerplate, length_controlled_win_rate, rate
from cai.eval.report import to_html, to_markdown
from cai.eval.schema import (
    EvalSummary,
    HackingEval,
    HarmEval,
    HelpfulnessEval,
    Interval,
    ModelEval,
    OverRefusalEval,
)


def iv(r: float, n: int = 40) -> Interval:
    lo, hi = wilson_interval(r * n, n)
    return Interval(rate=r, lo=lo, hi=hi, n=n)


def summary() -> EvalSummary:
    def model(name: str, harm: float, over: float) -> ModelEval:
        return ModelEval(
            name=name, model=f"runs/{name}",
            harm=HarmEval(harmful=iv(harm), refusal=iv(1 - harm), mean_p_harmful=harm),
            over_refusal=OverRefusalEval(safe_refusal=iv(over), unsafe_refusal=iv(0.8)),
            helpfulness=HelpfulnessEval(baseline="base", win_rate=iv(0.55), lc_win_rate=0.52, mean_len_diff=12.0),
            hacking=HackingEval(pm_length_corr=0.3, boilerplate_rate=0.1, kl_from_reference=2.5),
            mean_answer_chars=321.0,
        )

    return EvalSummary(
        constitution=ConstitutionRef(name="harmless", version="1.0", hash="ab" * 32),
        feedback_model="default",
        models=[model("base", 0.4, 0.05), model("dpo", 0.2, 0.1)],
        curves={"dpo": [{"step": i, "loss": 0.7 - 0.01 * i} for i in range(20)]},
        labeler_audit={"ece": 0.08, "verdict": "near chance on these pairs: use a larger feedback model",
                       "agreement": {"both": {"rate": 0.52, "lo": 0.45, "hi": 0.59}},
                       "reliability": [{"confidence": 0.55, "accuracy": 0.5, "n": 100}, {"confidence": 0.7, "accuracy": 0.6, "n": 50}]},
    )


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
    assert page.count("<td>") == 3 * page.count("<tr><td>")  # label + one cell per model


def test_plots_are_skipped_without_data():
    s = summary()
    s.curves, s.labeler_audit = {}, None
    assert len(re.findall(r"data:image/png", to_html(s))) == 1


def test_rate_and_lc_win_rate_examples():
    assert rate([True] * 3 + [False])["rate"] == 0.75
    assert abs(length_controlled_win_rate([0.5] * 4, [1, 2, 3, 4]) - 0.5) < 0.2
    assert boilerplate([])["n"] == 0
