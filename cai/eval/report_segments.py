"""The report's segmented figures (:mod:`cai.eval.segments`): one table per prompt-set column, a row per
segment and model, a column per figure, each cell a rate with its Wilson 95% interval; a judged figure
whose judge showed no signal on this run prints as "no signal"."""

from __future__ import annotations

import html
from typing import Any

from cai.eval.segments import FIGURES

SEGMENTS_NOTE = ("Every rate of the table above, over the prompts of each segment (the value of the prompt "
                 "set's column; '(none)': prompts without it). 95% Wilson intervals; a small segment has a "
                 "wide one. Harmful compliance and refusal on red-team prompts, over-refusal on safe "
                 "look-alikes, refusal on their unsafe contrasts, win rate on benign instructions.")


def cell(f: Any) -> str:
    """One segment's figure as a percentage with its interval, or ``no signal``.

    >>> from cai.eval.schema import SegmentFigure
    >>> cell(SegmentFigure(value=0.75, lo=0.3006, hi=0.9544, n=4)), cell(None)
    ('75.0% [30.1–95.4] (n=4)', '–')
    >>> cell(SegmentFigure(value=0.0, lo=0.0, hi=0.79, n=1, no_signal="judge scores constant: sd 0.000"))
    'no signal'
    """
    if f is None:
        return "–"
    if f.no_signal:
        return "no signal"
    return f"{100 * f.value:.1f}% [{100 * f.lo:.1f}–{100 * f.hi:.1f}] (n={f.n})"


def columns(summary: Any) -> list[str]:
    """The segmented columns of any model, in first-seen order."""
    return list(dict.fromkeys(col for m in summary.models for col in m.segments))


def segment_table(summary: Any, column: str) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of one column's table: segment, model, then each figure any model has.

    >>> from cai.eval.schema import EvalSummary, ModelEval, SegmentFigure
    >>> f = SegmentFigure(value=0.5, lo=0.0945, hi=0.9055, n=2)
    >>> s = EvalSummary(models=[ModelEval(name="base", model="m",
    ...                                   segments={"category": {"crime": {"refusal": f}}})])
    >>> segment_table(s, "category")
    (['category', 'model', 'refusal on red-team prompts'], [['crime', 'base', '50.0% [9.4–90.5] (n=2)']])
    """
    figures = [f for f in FIGURES if any(f in figs for m in summary.models
                                         for figs in m.segments.get(column, {}).values())]
    segments = list(dict.fromkeys(seg for m in summary.models for seg in m.segments.get(column, {})))
    rows = []
    for seg in segments:
        for m in summary.models:
            figs = m.segments.get(column, {}).get(seg)
            if figs:
                rows.append([seg, m.name, *(cell(figs.get(f)) for f in figures)])
    return [column, "model", *(FIGURES[f] for f in figures)], rows


def no_signal_notes(summary: Any) -> list[str]:
    """One line per judged figure shown as "no signal" in some segment, with its judge's reason."""
    reasons: dict[str, str] = {}
    for m in summary.models:
        for cells in m.segments.values():
            for figs in cells.values():
                for f, v in figs.items():
                    if v.no_signal:
                        reasons.setdefault(FIGURES.get(f, f), v.no_signal)
    return [f"{label}: no signal ({why}); see Judges on this run." for label, why in reasons.items()]


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def segments_markdown(summary: Any) -> list[str]:
    """The report.md lines of the segmented figures (none when nothing was segmented)."""
    cols = columns(summary)
    if not cols:
        return []
    lines = ["", "## Figures by segment", "", SEGMENTS_NOTE]
    for col in cols:
        head, rows = segment_table(summary, col)
        lines += ["", f"### By `{_md(col)}`", "", "| " + " | ".join(_md(h) for h in head) + " |",
                  "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
    notes = no_signal_notes(summary)
    return lines + (["", *[f"- {_md(n)}" for n in notes]] if notes else [])


def segments_html(summary: Any) -> str:
    """The report.html section of the segmented figures ("" when nothing was segmented)."""
    cols = columns(summary)
    if not cols:
        return ""
    parts = ['<h2>Figures by segment</h2>', f"<p>{html.escape(SEGMENTS_NOTE)}</p>"]
    for col in cols:
        head, rows = segment_table(summary, col)
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(
            f'<td><span class="nosignal">{html.escape(c)}</span></td>' if c == "no signal"
            else f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        parts.append(f"<h3>By <code>{html.escape(col)}</code></h3>"
                     f'<table class="segments" data-column="{html.escape(col)}"><thead><tr>{th}</tr></thead>'
                     f"<tbody>{body}</tbody></table>")
    notes = no_signal_notes(summary)
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return '<section id="segments">' + "".join(parts) + "</section>"
