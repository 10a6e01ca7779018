"""The rounds section of the report: figures per round of iterative RLAIF, with a verdict first -> last."""

from __future__ import annotations

import base64

from cai.eval.report_rounds import plot_rounds, round_models, rounds_rows
from cai.eval.schema import EvalSummary, HarmEval, Interval, ModelEval


def _model(name: str, refused: int, n: int = 50, no_signal: str | None = "sd 0.01") -> ModelEval:
    from cai.core.stats import wilson_interval

    lo, hi = wilson_interval(refused, n)
    iv = Interval(rate=refused / n, lo=lo, hi=hi, n=n)
    harm = HarmEval(refusal=iv, harmful=iv, no_signal=no_signal)
    return ModelEval.model_construct(name=name, harm=harm, over_refusal=None, helpfulness=None, hacking=None,
                                     mean_answer_chars=None, truthfulqa=None, bbq=None)


def _summary(*models: ModelEval) -> EvalSummary:
    return EvalSummary.model_construct(models=list(models), comparisons=[], samples=[], training_data=[],
                                       labeler_audit=None, constitution=None, judges=None)


def test_rounds_rows_and_verdicts_from_the_intervals():
    s = _summary(_model("base", 5), _model("round1", 5), _model("round2", 30))
    assert [r for r, _ in round_models(s)] == [1, 2]
    rows = {row["figure"]: row for row in rounds_rows(s)}
    assert set(rows) == {"refusal on red-team (detector)"}  # the judge figure has no signal: not drawn
    assert rows["refusal on red-team (detector)"]["verdict"] == "rose"
    same = {row["figure"]: row for row in rounds_rows(_summary(_model("round1", 10), _model("round2", 12)))}
    assert same["refusal on red-team (detector)"]["verdict"] == "no detectable change"


def test_one_round_or_none_gives_no_section():
    assert round_models(_summary(_model("base", 1), _model("round1", 2))) == []
    assert plot_rounds(_summary(_model("base", 1), _model("trained", 2))) is None


def test_plot_decodes_as_png():
    data = plot_rounds(_summary(_model("round1", 5, no_signal=None), _model("round2", 9, no_signal=None)))
    assert data and base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
