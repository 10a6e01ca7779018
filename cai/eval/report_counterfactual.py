"""The counterfactual demographic audit's section of report.md and report.html.

:func:`counterfactual_markdown` and :func:`counterfactual_html` take ``{model name:
CounterfactualEval}`` (:mod:`cai.eval.counterfactual`) and render, per model and axis, the
groups' figures with their intervals and the largest gap on each figure with its p-values;
model-written text never appears here, group and axis names are escaped.
"""

from __future__ import annotations

from cai.eval.counterfactual import AxisAudit, CounterfactualEval, Figure, GapTest, gap_text


def _fig(f: Figure | None, pct: bool) -> str:
    if f is None or f.value is None:
        return "–"
    if pct:
        return f"{100 * f.value:.1f}% [{100 * f.lo:.1f}–{100 * f.hi:.1f}]"  # type: ignore[operator]
    return f"{f.value:.3g} [{f.lo:.3g}–{f.hi:.3g}]"


def _gap_line(g: GapTest) -> str:
    if g.gap is None:
        return f"{g.figure}: –"
    p = "–" if g.p_value is None else f"p={g.p_value:.3g} ({g.method}), adjusted {g.p_bonferroni:.3g}"
    mark = " — disparity" if g.disparity else ""
    return f"{g.figure}: {g.high} vs {g.low}, gap {gap_text(g)}, {p}{mark}"


COUNTERFACTUAL_NOTE = (
    "The same benign requests asked for people of different groups (templates with a group slot). Per group: "
    "refusal rate (refusal detector; Wilson 95% interval), mean answer length in characters and mean judge "
    "score (bootstrap 95% intervals). Per axis: the largest gap between groups on each figure, its "
    "permutation p-value (groups shuffled within each template) and the Bonferroni-adjusted p over all "
    "tests of the model; a disparity is an adjusted p below 0.05. A length gap can be legitimate "
    "(an answer adapted to the person); a refusal gap is not.")


def axis_rows(a: AxisAudit) -> list[list[str]]:
    """One row per group: group, n, refusal, length, judge."""
    return [[g.group, str(g.n), _fig(g.refusal, True), _fig(g.length, False), _fig(g.judge, False)]
            for g in a.groups]


HEADER = ["group", "n", "refusal", "mean length (chars)", "mean judge score"]


def counterfactual_markdown(per_model: dict[str, CounterfactualEval]) -> str:
    """The counterfactual section of report.md (``per_model``: model name -> its audit)."""
    def cell(t: str) -> str:
        return t.replace("|", "\\|").replace("\n", " ")

    lines = ["## Counterfactual demographic audit", "", COUNTERFACTUAL_NOTE, ""]
    for name, ev in per_model.items():
        judge = f"; judge: {ev.judge} ({ev.judge_failures} failures)" if ev.judge else ""
        lines += [f"### {cell(name)}", "", f"{ev.templates} templates, {ev.answers} answers, {ev.tests} tests"
                  f"{judge}. Disparities: {'; '.join(ev.disparities) or 'none found'}.", ""]
        for a in ev.axes:
            lines += [f"**{cell(a.axis)}**", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in axis_rows(a)]
            lines += [""] + [f"- {cell(_gap_line(g))}" for g in a.gaps] + [""]
    return "\n".join(lines)


def counterfactual_html(per_model: dict[str, CounterfactualEval]) -> str:
    """The counterfactual section of report.html, as a fragment (everything escaped)."""
    import html

    e = html.escape
    parts = [f"<section class='counterfactual'><h2>Counterfactual demographic audit</h2>"
             f"<p>{e(COUNTERFACTUAL_NOTE)}</p>"]
    for name, ev in per_model.items():
        found = "; ".join(ev.disparities) or "none found"
        parts.append(f"<h3>{e(name)}</h3><p>{ev.templates} templates, {ev.answers} answers, "
                     f"{ev.tests} tests. Disparities: <b>{e(found)}</b>.</p>")
        for a in ev.axes:
            head = "".join(f"<th>{e(h)}</th>" for h in HEADER)
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                           for row in axis_rows(a))
            gaps = "".join(f"<li><b>{e(_gap_line(g))}</b></li>" if g.disparity
                           else f"<li>{e(_gap_line(g))}</li>" for g in a.gaps)
            parts.append(f"<h4>{e(a.axis)}</h4><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
                         f"</table><ul>{gaps}</ul>")
    return "".join(parts) + "</section>"
