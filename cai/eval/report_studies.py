"""The studies' sections of report.md and report.html, in report order: the guard judge's reads, the
counterfactual demographic audit, the reward over-optimization study (best-of-n) and the
preference-model failure probes; each only when it was run.

Each section is rendered by its own module (:mod:`cai.eval.report_guard`,
:mod:`cai.eval.report_counterfactual`, :mod:`cai.eval.overoptimization_report`,
:mod:`cai.eval.pm_probes_report`); this one gathers their inputs from an
:class:`~cai.eval.schema.EvalSummary`.
"""

from __future__ import annotations

from collections.abc import Callable

from cai.eval.schema import EvalSummary


def _sections(summary: EvalSummary, guard_r: Callable, cf_r: Callable, oo_r: Callable,
              pm_r: Callable) -> list[str]:
    """Each study's section, rendered by its own renderer (markdown or HTML), in report order."""
    guard = {m.name: m.guard for m in summary.models if m.guard is not None}
    cf = {m.name: m.counterfactual for m in summary.models if m.counterfactual is not None}
    parts = []
    if guard:
        parts.append(guard_r(guard, summary.feedback_model))
    if cf:
        parts.append(cf_r(cf))
    if summary.overoptimization is not None:
        parts.append(oo_r(summary.overoptimization))
    if summary.pm_probes is not None:
        parts.append(pm_r(summary.pm_probes))
    return parts


def studies_markdown(summary: EvalSummary) -> list[str]:
    """The studies' markdown lines (empty when none was run).

    >>> from cai.eval.schema import ModelEval
    >>> studies_markdown(EvalSummary(models=[ModelEval(name="a", model="m")]))
    []
    """
    from cai.eval.overoptimization_report import overoptimization_markdown
    from cai.eval.pm_probes_report import pm_probes_markdown
    from cai.eval.report_counterfactual import counterfactual_markdown
    from cai.eval.report_guard import guard_markdown

    parts = _sections(summary, guard_markdown, counterfactual_markdown, overoptimization_markdown,
                      pm_probes_markdown)
    return [line for p in parts for line in ["", *p.rstrip("\n").split("\n")]]


def studies_html(summary: EvalSummary) -> str:
    """The studies' HTML sections (with the best-of-n and probe plots as inline PNG); "" when none ran."""
    from cai.eval.overoptimization_report import overoptimization_html
    from cai.eval.pm_probes_report import pm_probes_html
    from cai.eval.report_counterfactual import counterfactual_html
    from cai.eval.report_guard import guard_html

    return "\n".join(_sections(summary, guard_html, counterfactual_html, overoptimization_html,
                               pm_probes_html))
