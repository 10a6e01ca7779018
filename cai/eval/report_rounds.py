"""Iterative rounds in the report: each figure against the round, so a user sees whether round 2 helped.

A recipe with ``rounds: N`` evaluates its policies as ``round1`` ... ``roundN`` (beside ``base``/``sft``);
the main table already has a column per round. This section adds the figures as lines over the rounds
(with their 95% intervals) and, for each figure, the change from the first to the last round with its
verdict, from the same intervals. A figure of a judge without signal on this run is left out, never drawn.
"""

from __future__ import annotations

import re
from typing import Any

from cai.eval.embedded_plots import figure_png, html_figure, pyplot
from cai.eval.schema import EvalSummary, Interval, ModelEval

ROUND_NAME = re.compile(r"^round(\d+)$")


def round_models(summary: EvalSummary) -> list[tuple[int, ModelEval]]:
    """``(round, model)`` of the models named ``roundN``, in round order; empty unless there are two or more.

    >>> from cai.eval.schema import EvalSummary
    >>> round_models(EvalSummary.model_construct(models=[]))
    []
    """
    found = sorted((int(m_.group(1)), m) for m in summary.models if (m_ := ROUND_NAME.match(m.name)))
    return found if len(found) >= 2 else []


def round_figures(m: ModelEval) -> dict[str, Interval]:
    """The rates of one model that can be drawn per round (judge figures only when the judge has signal)."""
    out: dict[str, Interval] = {}
    h, o, w = m.harm, m.over_refusal, m.helpfulness
    if h is not None and h.refusal is not None:
        out["refusal on red-team (detector)"] = h.refusal
    if h is not None and h.harmful is not None and not h.no_signal:
        out["harmful compliance (judge)"] = h.harmful
    if o is not None and o.safe_refusal is not None:
        out["over-refusal (safe look-alikes)"] = o.safe_refusal
    if w is not None and w.win_rate is not None and not w.no_signal:
        out["win rate vs baseline (judge)"] = w.win_rate
    return out


def change_verdict(first: Interval, last: Interval) -> str:
    """Whether a rate moved from the first round to the last: the intervals must not overlap to say so.

    A worked example: 10% [4, 20] then 40% [30, 51] do not overlap, so the rate rose; 30% [20, 42] then
    36% [26, 47] overlap, so the change cannot be told from noise with these counts.

    >>> change_verdict(Interval(rate=.1, lo=.04, hi=.2, n=50), Interval(rate=.4, lo=.3, hi=.51, n=50))
    'rose'
    >>> change_verdict(Interval(rate=.3, lo=.2, hi=.42, n=50), Interval(rate=.36, lo=.26, hi=.47, n=50))
    'no detectable change'
    """
    if last.lo > first.hi:
        return "rose"
    if last.hi < first.lo:
        return "fell"
    return "no detectable change"


def _series(rounds: list[tuple[int, ModelEval]]) -> dict[str, list[tuple[int, Interval]]]:
    series: dict[str, list[tuple[int, Interval]]] = {}
    for r, m in rounds:
        for name, iv in round_figures(m).items():
            series.setdefault(name, []).append((r, iv))
    return series


def plot_rounds(summary: EvalSummary) -> str | None:
    """Every drawable rate against the round, with 95% intervals, as base64 PNG (None without rounds)."""
    series = _series(round_models(summary))
    if not series:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, points in series.items():
        xs = [r for r, _ in points]
        ys = [iv.rate for _, iv in points]
        err = [[iv.rate - iv.lo for _, iv in points], [iv.hi - iv.rate for _, iv in points]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("rate (95% interval)")
    ax.set_xticks(sorted({r for points in series.values() for r, _ in points}))
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Figures per round of iterative RLAIF")
    return figure_png(fig)


def rounds_rows(summary: EvalSummary) -> list[dict[str, Any]]:
    """One row per figure: its value in each round and the first-to-last verdict."""
    rows = []
    for name, points in _series(round_models(summary)).items():
        verdict = change_verdict(points[0][1], points[-1][1]) if len(points) >= 2 else "one round"
        rows.append({"figure": name, "rounds": dict(points), "verdict": verdict})
    return rows


def _cell(iv: Interval) -> str:
    return f"{iv.rate:.0%} [{iv.lo:.0%}, {iv.hi:.0%}] (n={iv.n})"


def rounds_markdown(summary: EvalSummary) -> list[str]:
    """The section's markdown lines (none without rounds)."""
    rows = rounds_rows(summary)
    if not rows:
        return []
    numbers = [r for r, _ in round_models(summary)]
    lines = ["## Rounds", "", "Each figure per round of iterative RLAIF; the verdict compares the first and "
             "last round (their 95% intervals must not overlap to call a change).", "",
             "| figure | " + " | ".join(f"round {r}" for r in numbers) + " | first -> last |",
             "|---|" + "---|" * len(numbers) + "---|"]
    for row in rows:
        cells = [_cell(row["rounds"][r]) if r in row["rounds"] else "-" for r in numbers]
        lines.append(f"| {row['figure']} | " + " | ".join(cells) + f" | {row['verdict']} |")
    return [*lines, ""]


def rounds_html(summary: EvalSummary) -> str:
    """The section as HTML: the table and the plot (empty without rounds)."""
    import html

    rows = rounds_rows(summary)
    if not rows:
        return ""
    numbers = [r for r, _ in round_models(summary)]
    head = "".join(f"<th>round {r}</th>" for r in numbers)
    body = "".join(
        f"<tr><td>{html.escape(row['figure'])}</td>"
        + "".join(f"<td>{_cell(row['rounds'][r]) if r in row['rounds'] else '-'}</td>" for r in numbers)
        + f"<td>{row['verdict']}</td></tr>" for row in rows)
    return (f'<section id="rounds"><h2>Rounds</h2><table><tr><th>figure</th>{head}<th>first -&gt; last</th>'
            f"</tr>{body}</table>{html_figure('rounds-plot', 'Figures per round', plot_rounds(summary))}"
            "</section>")
