"""The over-optimization section of the report: the table, the verdict, and the plot against KL.

:func:`overoptimization_markdown` (report.md), :func:`overoptimization_text` (the
console), :func:`overoptimization_html` (report.html: the table and the plot as an
inline PNG) and :func:`plot_overoptimization` all read one
:class:`~cai.eval.overoptimization.OverOptimization`.
"""

from __future__ import annotations

import html

from cai.eval.overoptimization import OverOptimization

NOTE = ("Best-of-n: each prompt's answers are sampled once; the expected score of the proxy's pick among n "
        "is exact over all n-subsets (order statistics), averaged over prompts; intervals are 95% percentile "
        "bootstrap over prompts. KL is the analytic KL of best-of-n, log n - (n-1)/n; checkpoints use their "
        "measured KL.")


def _iv(x: float, lo: float, hi: float) -> str:
    """A value with its interval.

    >>> _iv(1.23456, 1.0, 1.5)
    '1.235 [1.000, 1.500]'
    """
    return f"{x:.3f} [{lo:.3f}, {hi:.3f}]"


def _opt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def rows(r: OverOptimization) -> list[list[str]]:
    """The table: n, KL, proxy [95% CI], gold [95% CI], then one row per checkpoint."""
    out = [[str(p.n), f"{p.kl:.3f}", _iv(p.proxy, p.proxy_lo, p.proxy_hi), _iv(p.gold, p.gold_lo, p.gold_hi)]
           for p in r.points]
    for c in r.checkpoints:
        step = f" (step {c.step})" if c.step is not None else ""
        out.append([f"{c.name}{step}", f"{c.kl:.3f} (measured)", _opt(c.proxy), _opt(c.gold)])
    return out


HEADER = ["best-of-n", "KL (nats)", "proxy score", "gold score"]


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def overoptimization_markdown(r: OverOptimization) -> str:
    """The section as markdown: what was measured, the table, where the curves part."""
    lines = ["## Reward over-optimization (best-of-n)", "",
             f"Policy `{r.policy}` sampled {r.ns[-1] if r.ns else 0} answers per prompt (temperature "
             f"{r.temperature:g}) on {r.prompts} prompt(s); proxy: {_md(r.proxy)}; gold: {_md(r.gold)}."
             + (f" {r.dropped_prompts} prompt(s) left out (a scorer failed)." if r.dropped_prompts else ""),
             ""]
    if not r.points:
        return "\n".join(lines + ["No prompt had every sample scored: nothing to show.", ""])
    lines += ["| " + " | ".join(HEADER) + " |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows(r)]
    lines += ["", f"**Curves:** {_md(r.parting.verdict)}." if r.parting else "", "", NOTE, ""]
    return "\n".join(lines)


def overoptimization_text(r: OverOptimization) -> str:
    """The table as plain aligned text, then the verdict (for the console)."""
    table = [HEADER, *rows(r)]
    widths = [max(len(row[k]) for row in table) for k in range(len(HEADER))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    if r.parting:
        out.append(f"curves: {r.parting.verdict}")
    return "\n".join(out)


def plot_overoptimization(r: OverOptimization) -> str | None:
    """Proxy (left axis) and gold (right axis) against KL, with bands; checkpoints as squares; base64 PNG."""
    from cai.eval.embedded_plots import figure_png, pyplot

    if not r.points and not r.checkpoints:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    gx = ax.twinx()
    for axis, key, color, label in ((ax, "proxy", "tab:blue", f"proxy: {r.proxy}"),
                                    (gx, "gold", "tab:orange", f"gold: {r.gold}")):
        if r.points:
            xs = [p.kl for p in r.points]
            ys = [getattr(p, key) for p in r.points]
            axis.fill_between(xs, [getattr(p, f"{key}_lo") for p in r.points],
                              [getattr(p, f"{key}_hi") for p in r.points], color=color, alpha=0.15)
            axis.plot(xs, ys, "o-", color=color, label=f"{label} (best-of-n)")
            if key == "proxy":
                for p in r.points:
                    axis.annotate(f"n={p.n}", (p.kl, p.proxy), textcoords="offset points", xytext=(4, -11),
                                  fontsize=7)
        cps = [(c.kl, getattr(c, key), c.name) for c in r.checkpoints if getattr(c, key) is not None]
        if cps:
            axis.plot([c[0] for c in cps], [c[1] for c in cps], "s--", color=color, markerfacecolor="none",
                      label=f"{key}: checkpoints (measured KL)")
        axis.set_ylabel(label[:48], color=color)
    if r.parting and r.parting.parted_at is not None and r.parting.kl is not None:
        ax.axvline(r.parting.kl, color="grey", linestyle=":", label=f"curves part (n={r.parting.parted_at})")
    ax.set_xlabel("KL from the policy (nats): best-of-n analytic, checkpoints measured")
    ax.set_title("Reward over-optimization")
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + gx.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="best")
    return figure_png(fig)


def overoptimization_html(r: OverOptimization) -> str:
    """The section as HTML: the table, the verdict, the plot (inline PNG). Every text is escaped."""
    from cai.eval.embedded_plots import html_figure

    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows(r))
    verdict = f"<p><b>Curves:</b> {html.escape(r.parting.verdict)}.</p>" if r.parting else ""
    return (f'<h2>Reward over-optimization (best-of-n)</h2><p>Policy <code>{html.escape(r.policy)}</code>, '
            f"{r.prompts} prompt(s), proxy {html.escape(r.proxy)}, gold {html.escape(r.gold)}.</p>"
            f'<table id="overoptimization"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f"{verdict}<p>{html.escape(NOTE)}</p>"
            + html_figure("overoptimization-plot", "Proxy and gold score vs KL", plot_overoptimization(r)))
