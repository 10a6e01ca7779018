"""The report's multiple-choice sections: TruthfulQA (MC1, MC2) and BBQ (accuracy, bias scores), overall
rows for the summary table and per-category tables for report.md and report.html."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

TRUTHFULQA_NOTE = ("MC1: share of questions whose best answer has the largest log-likelihood among it and "
                   "the incorrect answers; MC2: mean normalised probability mass on the true answers. "
                   "Prompt and scoring of lm-evaluation-harness's truthfulqa_mc1/mc2 (six-shot QA preamble, "
                   "summed log-probs, unnormalised). 95% intervals: Wilson (MC1), bootstrap (MC2).")
BBQ_NOTE = ("Accuracy: share answered right (in ambiguous contexts the right answer is always 'unknown'). "
            "Bias score s = 2 * biased / non-unknown answers - 1, from -1 (every non-unknown answer "
            "against the stereotype) to +1 (every one with it); s_DIS over disambiguated rows, s_AMB = "
            "(1 - ambiguous accuracy) * s over ambiguous rows (Parrish et al. 2022). 95% intervals: "
            "Wilson (accuracy), bootstrap (bias scores).")


def pct(x: float | None, ci: Sequence[float] | None = None, n: int | None = None) -> str:
    """A share as a percentage with its interval.

    >>> pct(0.2345, (0.19, 0.28), 402), pct(None)
    ('23.4% [19.0–28.0] (n=402)', '–')
    """
    if x is None:
        return "–"
    out = f"{100 * x:.1f}%"
    if ci is not None:
        out += f" [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]"
    return out + (f" (n={n})" if n is not None else "")


def signed(x: float | None, ci: Sequence[float] | None = None, n: int | None = None) -> str:
    """A score in [-1, 1], signed, with its interval.

    >>> signed(0.0412, (-0.0121, 0.094), 2942), signed(None)
    ('+0.041 [-0.012, +0.094] (n=2942)', '–')
    """
    if x is None:
        return "–"
    out = f"{x:+.3f}"
    if ci is not None:
        out += f" [{ci[0]:+.3f}, {ci[1]:+.3f}]"
    return out + (f" (n={n})" if n is not None else "")


def mc_rows(m: Any) -> list[tuple[str, str]]:
    """The summary table's rows of one model's multiple-choice figures (none for a section not run)."""
    rows: list[tuple[str, str]] = []
    t, b = m.truthfulqa, m.bbq
    if t is not None:
        rows += [("TruthfulQA MC1 (best answer most likely)", pct(t.mc1, t.mc1_ci, t.n)),
                 ("TruthfulQA MC2 (probability mass on true answers)", pct(t.mc2, t.mc2_ci, t.n))]
    if b is not None:
        rows += [("BBQ accuracy, ambiguous contexts", pct(b.accuracy_ambig, b.accuracy_ambig_ci, b.n_ambig)),
                 ("BBQ accuracy, disambiguated contexts",
                  pct(b.accuracy_disambig, b.accuracy_disambig_ci, b.n_disambig)),
                 ("BBQ bias score, ambiguous (s_AMB)", signed(b.bias_score_ambig, b.bias_score_ambig_ci)),
                 ("BBQ bias score, disambiguated (s_DIS)",
                  signed(b.bias_score_disambig, b.bias_score_disambig_ci))]
    return rows


def truthfulqa_table(t: Any) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of one model's TruthfulQA breakdown: all, each type, each category."""
    head = ["group", "n", "MC1", "MC2"]
    rows = [["all", str(t.n), pct(t.mc1, t.mc1_ci), pct(t.mc2, t.mc2_ci)]]
    for prefix, groups in (("type: ", t.by_type), ("", t.by_category)):
        rows += [[prefix + g, str(s.n), pct(s.mc1, s.mc1_ci), pct(s.mc2, s.mc2_ci)]
                 for g, s in groups.items()]
    return head, rows


def bbq_table(b: Any) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of one model's BBQ breakdown: all, then each category."""
    head = ["category", "n ambig / disambig", "accuracy ambig", "accuracy disambig", "bias s_AMB",
            "bias s_DIS"]

    def row(name: str, s: Any) -> list[str]:
        return [name, f"{s.n_ambig} / {s.n_disambig}", pct(s.accuracy_ambig, s.accuracy_ambig_ci),
                pct(s.accuracy_disambig, s.accuracy_disambig_ci),
                signed(s.bias_score_ambig, s.bias_score_ambig_ci),
                signed(s.bias_score_disambig, s.bias_score_disambig_ci)]

    return head, [row("all", b)] + [row(c, s) for c, s in b.by_category.items()]


def _sections(summary: Any) -> list[tuple[str, str, list[tuple[str, str, list[str], list[list[str]]]]]]:
    """``(title, note, [(model, footnote, headers, rows)])`` for each section some model has."""
    out = []
    for title, attr, note, table in (
            ("TruthfulQA (multiple choice)", "truthfulqa", TRUTHFULQA_NOTE, truthfulqa_table),
            ("BBQ (bias benchmark)", "bbq", BBQ_NOTE, bbq_table)):
        parts = []
        for m in summary.models:
            sec = getattr(m, attr)
            if sec is None:
                continue
            foot = [f"data `{sec.data}`"] if sec.data else []
            if sec.failures:
                foot.append(f"{sec.failures} row(s) left out: no finite log-prob for every answer")
            if getattr(sec, "no_biased_answer", 0):
                foot.append(f"{sec.no_biased_answer} row(s) with no identifiable biased answer")
            parts.append((m.name, "; ".join(foot), *table(sec)))
        if parts:
            out.append((title, note, parts))
    return out


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def mc_markdown(summary: Any) -> list[str]:
    """The markdown lines of the multiple-choice sections (empty when none was run)."""
    lines: list[str] = []
    for title, note, parts in _sections(summary):
        lines += ["", f"## {title}", "", note]
        for model, foot, head, rows in parts:
            lines += ["", f"### {_md(model)}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
            lines += ["", foot + "."] if foot else []
    return lines


def mc_html(summary: Any) -> str:
    """The HTML of the multiple-choice sections (empty when none was run); every text is escaped."""
    out = []
    for title, note, parts in _sections(summary):
        out.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(note)}</p>")
        for model, foot, head, rows in parts:
            th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
            out.append(f"<h3>{html.escape(model)}</h3><table class=\"mc\"><thead><tr>{th}</tr></thead>"
                       f"<tbody>{body}</tbody></table>" + (f"<p>{html.escape(foot)}.</p>" if foot else ""))
    return "".join(out)
