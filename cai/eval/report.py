"""Render an :class:`~cai.eval.schema.EvalSummary` as markdown and as one self-contained HTML page.

The HTML embeds its plots as base64 PNG (matplotlib, Agg backend), so the file
opens anywhere without other files: harm vs over-refusal for each model, the
training curves of each trained model, and the AI labeler's reliability diagram.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

from cai.eval.schema import EvalSummary, Interval, ModelEval

# On load, the page records how many of its images decoded (naturalWidth > 0) in <body data-images-ok>,
# so a headless browser's DOM dump shows whether every plot rendered.
IMAGE_CHECK = (
    "window.addEventListener('load',function(){var i=document.images,k=0;"
    "for(var j=0;j<i.length;j++){if(i[j].complete&&i[j].naturalWidth>0){k++;}}"
    "document.body.setAttribute('data-images-ok',k);document.body.setAttribute('data-images',i.length);});"
)
CURVE_KEYS = ("loss", "reward", "kl", "rewards/margins", "rewards/accuracies", "eval_accuracy", "eval_loss", "entropy")


def fmt(iv: Interval | None) -> str:
    """A rate and its interval as percentages.

    >>> fmt(Interval(rate=0.25, lo=0.1, hi=0.5, n=20))
    '25.0% [10.0–50.0] (n=20)'
    >>> fmt(None)
    '–'
    """
    if iv is None or iv.n == 0 or math.isnan(iv.rate):
        return "–"
    return f"{100 * iv.rate:.1f}% [{100 * iv.lo:.1f}–{100 * iv.hi:.1f}] (n={iv.n})"


def _num(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def table_rows(m: ModelEval) -> list[tuple[str, str]]:
    """The figures of one model, as (label, value) rows in report order."""
    h, o, w, k = m.harm, m.over_refusal, m.helpfulness, m.hacking
    return [
        ("harmful compliance on red-team prompts (judge)", fmt(h.harmful if h else None)),
        ("mean judge p(harmful) on red-team answers", _num(h.mean_p_harmful if h else None)),
        ("refusal on red-team prompts (detector)", fmt(h.refusal if h else None)),
        ("over-refusal: refusal on safe look-alikes (XSTest safe)", fmt(o.safe_refusal if o else None)),
        ("refusal on their unsafe contrasts (XSTest unsafe)", fmt(o.unsafe_refusal if o else None)),
        (f"win rate vs {w.baseline if w else 'baseline'} (both orders)", fmt(w.win_rate if w else None)),
        ("length-controlled win rate", _num(w.lc_win_rate if w else None, ".1%")),
        ("boilerplate rate", _num(k.boilerplate_rate if k else None, ".1%")),
        ("preference-model score vs length (Pearson r)", _num(k.pm_length_corr if k else None)),
        ("preference model vs judge disagreement", _num(k.pm_judge_disagreement if k else None, ".1%")),
        ("KL from reference (nats per answer)", _num(k.kl_from_reference if k else None)),
        ("mean answer length (chars)", _num(m.mean_answer_chars, ".0f")),
    ]


def to_markdown(summary: EvalSummary) -> str:
    """A markdown table with one column per model."""
    names = [m.name for m in summary.models]
    rows = [table_rows(m) for m in summary.models]
    lines = ["# Evaluation", ""]
    if summary.constitution:
        c = summary.constitution
        lines.append(f"Constitution: **{c.name}** v{c.version} (hash `{c.hash[:12]}`); feedback model: "
                     f"`{summary.feedback_model}`{_judge_note(summary)}.")
        lines.append("")
    lines.append("| figure | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for i, (label, _) in enumerate(rows[0] if rows else []):
        lines.append(f"| {label} | " + " | ".join(r[i][1] for r in rows) + " |")
    lines.append("")
    lines.append("Intervals are 95% Wilson intervals. Refusals are counted by the documented phrase rules in "
                 "`cai/scoring/refusal.py`; harm is judged by the feedback model against the constitution.")
    if summary.labeler_audit:
        lines += ["", "## AI labeler audit", "", _audit_line(summary.labeler_audit)]
    return "\n".join(lines) + "\n"


def _judge_note(summary: EvalSummary) -> str:
    """How harm was judged, from the settings (empty when unknown).

    >>> _judge_note(EvalSummary(models=[], settings={"judge": "rubric", "max_new_tokens": 96}))
    '; harm judge: rubric; greedy answers of up to 96 tokens'
    """
    judge, tokens = summary.settings.get("judge"), summary.settings.get("max_new_tokens")
    return (f"; harm judge: {judge}" if judge else "") + (f"; greedy answers of up to {tokens} tokens" if tokens else "")


def _audit_line(audit: dict[str, Any]) -> str:
    verdict = audit.get("verdict") or ""
    agree = audit.get("agreement", {}).get("both") if isinstance(audit.get("agreement"), dict) else None
    if isinstance(agree, dict) and "rate" in agree:
        return f"Agreement with human labels (both orders): {100 * agree['rate']:.1f}% [{100 * agree.get('lo', 0):.1f}–{100 * agree.get('hi', 1):.1f}]. {verdict}"
    return str(verdict)


# ------------------------------------------------------------------------------------------- plots


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_harm_vs_overrefusal(summary: EvalSummary) -> str | None:
    """Scatter of harm (y) against over-refusal (x), one point per model, with 95% error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = []
    for m in summary.models:
        harm = (m.harm.harmful or m.harm.refusal) if m.harm else None
        over = m.over_refusal.safe_refusal if m.over_refusal else None
        if harm is not None and over is not None:
            pts.append((m.name, over, harm, m.harm.harmful is not None))
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    seen: dict[tuple[float, float], int] = {}  # models at the same point get their labels stacked
    for name, x, y, _judged in pts:
        ax.errorbar(x.rate, y.rate, xerr=[[x.rate - x.lo], [x.hi - x.rate]], yerr=[[y.rate - y.lo], [y.hi - y.rate]],
                    fmt="o", capsize=3, label=name)
        k = seen[(x.rate, y.rate)] = seen.get((x.rate, y.rate), -1) + 1
        ax.annotate(name, (x.rate, y.rate), textcoords="offset points", xytext=(6, 6 + 12 * k))
    judged = all(p[3] for p in pts)
    ax.set_xlabel("over-refusal (refusal rate on safe look-alikes)")
    ax.set_ylabel("harmful compliance (judge)" if judged else "refusal on red-team prompts")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title("Harm vs over-refusal (lower-left is better)" if judged else "Refusal trade-off")
    return _png(fig)


def plot_curves(curves: dict[str, list[dict[str, float]]]) -> str | None:
    """Training curves: one panel per logged metric, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in CURVE_KEYS if any(k in row for rows in curves.values() for row in rows)][:4]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for run, rows in curves.items():
            pts = [(r.get("step", i), r[key]) for i, r in enumerate(rows) if key in r and r[key] is not None]
            if pts:
                ax.plot(*zip(*pts), label=run, marker="." if len(pts) < 30 else None)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)


def plot_reliability(audit: dict[str, Any]) -> str | None:
    """Reliability diagram from an audit's bins: the labeler's confidence in its pick vs observed agreement."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in audit.get("reliability", []) if b.get("n")]
    if not bins:
        return None
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label="AI labeler")
    for b in bins:
        ax.annotate(str(b["n"]), (b["confidence"], b["accuracy"]), fontsize=7, textcoords="offset points", xytext=(3, -9))
    ax.set_xlabel("labeler confidence in its pick")
    ax.set_ylabel("observed agreement")
    ece = audit.get("ece")
    ax.set_title("Labeler reliability" + (f" (ECE {ece:.3f})" if isinstance(ece, (int, float)) else ""))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


# -------------------------------------------------------------------------------------------- html


def to_html(summary: EvalSummary) -> str:
    """One self-contained HTML page: the table and every plot that has data."""
    names = [m.name for m in summary.models]
    rows = [table_rows(m) for m in summary.models]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(
        "<tr><td>" + html.escape(label) + "</td>" + "".join(f"<td>{html.escape(r[i][1])}</td>" for r in rows) + "</tr>"
        for i, (label, _) in enumerate(rows[0] if rows else [])
    )
    plots = [
        ("harm-vs-overrefusal", "Harm vs over-refusal", plot_harm_vs_overrefusal(summary)),
        ("training-curves", "Training curves", plot_curves(summary.curves) if summary.curves else None),
        ("reliability", "AI labeler reliability", plot_reliability(summary.labeler_audit) if summary.labeler_audit else None),
    ]
    figures = "".join(
        f'<figure id="{pid}"><figcaption>{title}</figcaption><img alt="{title}" src="data:image/png;base64,{data}"></figure>'
        for pid, title, data in plots if data
    )
    const = ""
    if summary.constitution:
        c = summary.constitution
        const = (f"<p>Constitution <b>{html.escape(c.name)}</b> v{html.escape(c.version)} "
                 f"(hash <code>{c.hash[:12]}</code>); feedback model <code>{html.escape(str(summary.feedback_model))}</code>"
                 f"{html.escape(_judge_note(summary))}.</p>")
    audit = f"<p>{html.escape(_audit_line(summary.labeler_audit))}</p>" if summary.labeler_audit else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cai evaluation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 14px; }}
th {{ background: #f3f3f3; }}
figure {{ display: inline-block; margin: 1em 1em 1em 0; vertical-align: top; }}
figcaption {{ font-weight: 600; margin-bottom: 4px; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>cai evaluation</h1>
{const}
<table id="summary"><thead><tr><th>figure</th>{head}</tr></thead><tbody>{body}</tbody></table>
<p>Intervals are 95% Wilson intervals. Refusals: documented phrase rules (<code>cai/scoring/refusal.py</code>).
Harm: judged by the feedback model against the constitution.</p>
{audit}
{figures}
<p><small>generated {html.escape(summary.created_at)}</small></p>
<script>{IMAGE_CHECK}</script>
</body></html>
"""
