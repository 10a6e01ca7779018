"""The report's segmented evaluation (:mod:`cai.eval.matrix`): per figure, a table (markdown) and a heatmap
(HTML; rows: models, columns: prompt sets, each cell the rate and its Wilson 95% interval), and under it the
one-line answer: is each regional model best on its own region's set, and does it keep the core set?"""

from __future__ import annotations

import html
import math
from typing import Any

from cai.eval.matrix import FIGURES, HIGHER_IS_BETTER
from cai.eval.report_segments import cell

MATRIX_NOTE = ("Every model on every prompt set (rows: models, columns: sets), each rate with its 95% Wilson "
               "interval. Refusal on red-team prompts and on unsafe contrasts: higher is better; harmful "
               "compliance and over-refusal on safe look-alikes: lower is better. A difference inside the "
               "intervals is 'cannot tell'.")


def sets_of(table: dict[str, dict[str, Any]]) -> list[str]:
    """The sets of a figure's table, in first-seen order.

    >>> sets_of({"a": {"core": 1, "eu": 2}, "b": {"us": 3, "core": 4}})
    ['core', 'eu', 'us']
    """
    return list(dict.fromkeys(s for sets in table.values() for s in sets))


def matrix_table(table: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of one figure: model, then a column per set.

    >>> from cai.eval.schema import SegmentFigure
    >>> f = SegmentFigure(value=0.5, lo=0.0945, hi=0.9055, n=2)
    >>> head, rows = matrix_table({"core": {"eu": f}, "core+eu": {"core": f}})
    >>> head, rows[0]
    (['model', 'eu', 'core'], ['core', '50.0% [9.4–90.5] (n=2)', '–'])
    """
    sets = sets_of(table)
    return ["model", *sets], [[m, *(cell(cells.get(s)) for s in sets)] for m, cells in table.items()]


def _md(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def matrix_markdown(summary: Any) -> list[str]:
    """The report.md lines of the segmented evaluation (none when no matrix was run)."""
    if not summary.matrix:
        return []
    lines = ["", "## Segmented evaluation (models x prompt sets)", "", MATRIX_NOTE]
    for figure, table in summary.matrix.items():
        head, rows = matrix_table(table)
        lines += ["", f"### {FIGURES.get(figure, figure)}", "",
                  "| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
        if figure in summary.matrix_verdicts:
            lines += ["", f"Own region, core kept: {_md(summary.matrix_verdicts[figure])}"]
    return lines


def heatmap_png(figure: str, table: dict[str, dict[str, Any]]) -> str | None:
    """One figure's heatmap as base64 PNG: models x sets, the value and interval written in each cell,
    green where the figure is good (None when the table is empty)."""
    from cai.eval.embedded_plots import figure_png, pyplot

    models, sets = list(table), sets_of(table)
    if not models or not sets:
        return None
    plt = pyplot()
    values = [[math.nan if (f := table[m].get(s)) is None or f.no_signal else f.value for s in sets]
              for m in models]
    fig, ax = plt.subplots(figsize=(1.6 * len(sets) + 2.4, 0.7 * len(models) + 1.6))
    cmap = "RdYlGn" if HIGHER_IS_BETTER.get(figure, True) else "RdYlGn_r"
    im = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for i, m in enumerate(models):
        for j, s in enumerate(sets):
            f = table[m].get(s)
            text = ("–" if f is None else "no signal" if f.no_signal
                    else f"{100 * f.value:.0f}%\n[{100 * f.lo:.0f}–{100 * f.hi:.0f}]\nn={f.n}")
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(sets)), sets)
    ax.set_yticks(range(len(models)), models)
    ax.set_xlabel("prompt set")
    ax.set_title(FIGURES.get(figure, figure), fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return figure_png(fig)


def matrix_html(summary: Any) -> str:
    """The report.html section: per figure its heatmap, its one-line answer and its table ("" when none)."""
    from cai.eval.embedded_plots import html_figure

    if not summary.matrix:
        return ""
    parts = ["<h2>Segmented evaluation (models x prompt sets)</h2>", f"<p>{html.escape(MATRIX_NOTE)}</p>"]
    for figure, table in summary.matrix.items():
        label = FIGURES.get(figure, figure)
        parts.append(html_figure(f"matrix-{figure}", label, heatmap_png(figure, table)))
        if figure in summary.matrix_verdicts:
            parts.append(f'<p class="verdict" data-figure="{html.escape(figure)}">Own region, core kept: '
                         f"{html.escape(summary.matrix_verdicts[figure])}</p>")
        head, rows = matrix_table(table)
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        parts.append(f'<table class="matrix" data-figure="{html.escape(figure)}"><thead><tr>{th}</tr></thead>'
                     f"<tbody>{body}</tbody></table>")
    return '<section id="matrix">' + "".join(parts) + "</section>"


def matrix_text(summary: Any) -> str:
    """The console's segmented evaluation: per figure an aligned models x sets table and its answer."""
    blocks = []
    for figure, table in summary.matrix.items():
        head, rows = matrix_table(table)
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = [f"{FIGURES.get(figure, figure)} (models x prompt sets):"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
        if figure in summary.matrix_verdicts:
            lines.append(f"own region, core kept: {summary.matrix_verdicts[figure]}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
