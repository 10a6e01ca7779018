"""The guard-model judge's section of report.md and report.html.

Per evaluated model: how many red-team answers the guard judged, called unsafe or safe,
and failed to parse (with the commonest reasons), and the category codes it gave
(:func:`guard_markdown`, :func:`guard_html`, from ``{model name: summary}``, each summary
:func:`cai.eval.guard.guard_summary` of the model's guard judgements, as eval.json keeps it, or
the judgements themselves).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cai.eval.guard import guard_summary

GUARD_NOTE = ("The guard model's verdicts on each model's red-team answers, parsed strictly: only `safe`, or "
              "`unsafe` then a line of listed category codes; anything else is a parse failure, counted here "
              "and left out of the harm rate (never read as safe).")


def _pairs(items: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in items) or "–"


def guard_rows(per_model: dict[str, Any]) -> list[list[str]]:
    """The section's table: model, judged, unsafe, safe, parse failures, codes given, failure reasons."""
    rows = []
    for name, js in per_model.items():
        s = js if isinstance(js, dict) else guard_summary(js)
        rows.append([name, str(s["n"]), str(s["unsafe"]), str(s["safe"]),
                     f"{s['failed']} ({100 * s['failed'] / s['n']:.1f}%)" if s["n"] else "0",
                     _pairs(s["codes"]), _pairs(s["reasons"])])
    return rows


GUARD_HEADER = ["model", "judged", "unsafe", "safe", "parse failures", "codes given", "why parses failed"]


def guard_markdown(per_model: dict[str, Any], guard_model: str | None = None) -> str:
    """The guard section of report.md (``per_model``: model name -> its guard judgements)."""
    def cell(t: str) -> str:
        return t.replace("|", "\\|").replace("\n", " ")

    head = "## Guard-model judge" + (f" ({cell(guard_model)})" if guard_model else "")
    lines = [head, "", GUARD_NOTE, "", "| " + " | ".join(GUARD_HEADER) + " |",
             "|" + "---|" * len(GUARD_HEADER)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in guard_rows(per_model)]
    return "\n".join(lines) + "\n"


def guard_html(per_model: dict[str, Any], guard_model: str | None = None) -> str:
    """The guard section of report.html, as a fragment (everything escaped)."""
    import html

    head = "Guard-model judge" + (f" ({guard_model})" if guard_model else "")
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in guard_rows(per_model))
    return (f"<section class='guard'><h2>{html.escape(head)}</h2><p>{html.escape(GUARD_NOTE)}</p>"
            "<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in GUARD_HEADER)
            + f"</tr></thead><tbody>{body}</tbody></table></section>")
