"""The preference-model probes section of the report: the edit table, the flagged favourites, the plot.

:func:`format_pm_probes` (plain text for the console), :func:`pm_probes_markdown`,
:func:`pm_probes_html` (with :func:`plot_pm_probes` inline as PNG) all read one
:class:`~cai.eval.pm_probes.PmProbes`.
"""

from __future__ import annotations

import html

from cai.eval.pm_probes import EditEffect, PmProbes, Rate

HEADER = ["edit", "probes", "n", "mean PM change [95% CI]", "in PM sd", "verdict"]
NOTE = ("Each edit changes one thing in the same answer; the change PM(edited) - PM(original) is paired per "
        "answer, with a 95% percentile bootstrap interval over answers. 'in PM sd': the mean change over the "
        "spread of the PM's scores of the answers as written.")


def _signed(x: float | None, spec: str = "+.3f") -> str:
    return "–" if x is None else format(x, spec)


def edit_row(e: EditEffect) -> list[str]:
    """One table row.

    >>> edit_row(EditEffect(edit="flattery", position="prepend", text="Great question!", probes="sycophancy",
    ...                     n=40, mean=0.25, lo=0.1, hi=0.4, sd_units=0.5,
    ...                     verdict="sensitive: raises the score"))
    ['flattery', 'sycophancy', '40', '+0.250 [+0.100, +0.400]', '+0.50', 'sensitive: raises the score']
    """
    change = "–" if e.mean is None else f"{e.mean:+.3f} [{e.lo:+.3f}, {e.hi:+.3f}]"
    return [e.edit, e.probes, str(e.n), change, _signed(e.sd_units, "+.2f"), e.verdict]


def rate_text(r: Rate | None) -> str:
    """``k/n = rate [lo–hi]`` in percent.

    >>> rate_text(Rate(k=2, n=10, rate=0.2, lo=0.057, hi=0.51)), rate_text(None)
    ('2/10 = 20% [6–51%]', '–')
    """
    if r is None or r.rate is None:
        return "–"
    return f"{r.k}/{r.n} = {100 * r.rate:.0f}% [{100 * r.lo:.0f}–{100 * r.hi:.0f}%]"


def flag_lines(p: PmProbes) -> list[str]:
    """The favourites' flag rates against the overall rates, then each flagged favourite."""
    out = [f"flagged (refusal detector or harm judge) among the PM's top {p.top}: "
           f"{rate_text(p.flagged_top)}; among all {p.answers}: {rate_text(p.flagged_all)}",
           f"refusals: top {rate_text(p.refused_top)}, all {rate_text(p.refused_all)}; harmful (judge): top "
           f"{rate_text(p.harmful_top)}, all {rate_text(p.harmful_all)}"
           + (f" ({p.harm_note})" if p.harm_note else "")]
    for f in p.flagged:
        why = ", ".join(x for x in ((f"refusal ({f.refusal})" if f.refusal else ""),
                                    (f"p_harmful {f.p_harmful:.2f}" if f.p_harmful is not None
                                     and f.p_harmful >= 0.5 else "")) if x)
        text = " ".join(f.answer.split())[:120]
        out.append(f"#{f.rank} PM {f.pm_score:+.3f} [{why}] {f.model}: {text!r}")
    return out


def format_pm_probes(p: PmProbes) -> str:
    """The probes as plain aligned text: the edit table, then the flagged favourites."""
    table = [HEADER, *(edit_row(e) for e in p.edits)]
    widths = [max(len(row[k]) for row in table) for k in range(len(HEADER))]
    lines = [f"preference-model probes: {p.pm} ({p.answers} answers, {p.edited} edited)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines + flag_lines(p))


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def pm_probes_markdown(p: PmProbes) -> str:
    """The section as markdown."""
    lines = ["## Preference-model failure probes", "",
             f"Preference model {_md(p.pm)}: {p.answers} answers scored as written, {p.edited} edited each "
             "way.", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_md(c) for c in edit_row(e)) + " |" for e in p.edits]
    lines += ["", NOTE, ""] + [f"- {_md(x)}" for x in flag_lines(p)] + [""]
    return "\n".join(lines)


def plot_pm_probes(p: PmProbes) -> str | None:
    """Mean PM change per edit with its 95% interval (horizontal bars); base64 PNG."""
    from cai.eval.embedded_plots import figure_png, pyplot

    shown = [e for e in p.edits if e.mean is not None]
    if not shown:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 0.5 * len(shown) + 1.4))
    ys = list(range(len(shown)))[::-1]
    colors = ["tab:red" if e.verdict.startswith("sensitive") else "tab:grey" for e in shown]
    ax.barh(ys, [e.mean for e in shown], color=colors, alpha=0.7,
            xerr=[[e.mean - e.lo for e in shown], [e.hi - e.mean for e in shown]], capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ys, [f"{e.edit}\n({e.probes})" for e in shown], fontsize=7)
    ax.set_xlabel("mean change of the PM score (edited - original), 95% CI")
    ax.set_title("Preference model under controlled edits (red: sensitive)")
    ax.grid(alpha=0.3, axis="x")
    return figure_png(fig)


def pm_probes_html(p: PmProbes) -> str:
    """The section as HTML: the edit table, the flag rates and flagged favourites, the plot. Escaped."""
    from cai.eval.embedded_plots import html_figure

    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in edit_row(e)) + "</tr>"
                   for e in p.edits)
    flags = "".join(f"<li>{html.escape(x)}</li>" for x in flag_lines(p))
    return (f"<h2>Preference-model failure probes</h2><p>Preference model {html.escape(p.pm)}: {p.answers} "
            f"answers, {p.edited} edited each way.</p><table id=\"pm-probes\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table><p>{html.escape(NOTE)}</p><ul id=\"pm-favourites\">{flags}</ul>"
            + html_figure("pm-probes-plot", "PM score change under controlled edits", plot_pm_probes(p)))
