"""Render an :class:`~cai.eval.schema.EvalSummary` as markdown and as one self-contained HTML page.

Both carry: the figures (one column per model; a judge without signal on this run
prints ``no signal (why)``, never a rate), "Judges on this run" (each judge's spread,
consistency and audit), the before/after comparison with intervals and verdicts
(:mod:`cai.eval.compare`; a regression on the constitution's aim in bold / red),
the multiple-choice benchmarks (TruthfulQA, BBQ: :mod:`cai.eval.report_mc`),
answers side by side for a seeded sample of each set, and a sample of the training
data. Every model-written text is escaped (HTML) or fenced (markdown).

The HTML embeds its plots as base64 PNG (matplotlib, Agg backend), so the file
opens anywhere without other files: harm vs over-refusal for each model, the
training curves of each trained model, and the AI labeler's reliability diagram.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from typing import Any

from cai.eval.compare import COMPARISON_LEGEND, comparison_rows
from cai.eval.report_matrix import matrix_html, matrix_markdown
from cai.eval.report_mc import mc_html, mc_markdown, mc_rows
from cai.eval.report_rounds import rounds_html, rounds_markdown
from cai.eval.report_segments import segments_html, segments_markdown
from cai.eval.report_studies import studies_html, studies_markdown
from cai.eval.schema import EvalSummary, Interval, ModelEval, SampleAnswer

# On load, the page records how many of its images decoded (naturalWidth > 0) in <body data-images-ok>,
# so a headless browser's DOM dump shows whether every plot rendered.
IMAGE_CHECK = (
    "window.addEventListener('load',function(){var i=document.images,k=0;"
    "for(var j=0;j<i.length;j++){if(i[j].complete&&i[j].naturalWidth>0){k++;}}"
    "document.body.setAttribute('data-images-ok',k);document.body.setAttribute('data-images',i.length);});"
)
CURVE_KEYS = ("loss", "reward", "kl", "rewards/margins", "rewards/accuracies", "eval_accuracy",
              "eval_loss", "entropy")


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


def judged(text: str, reason: str | None) -> str:
    """A judged figure, or ``no signal (why)`` when its judge showed none on this run.

    >>> judged("0.0% [0.0–4.6] (n=80)", "judge scores constant: sd 0.004")
    'no signal (judge scores constant: sd 0.004)'
    >>> judged("12.5%", None)
    '12.5%'
    """
    return f"no signal ({reason})" if reason else text


def table_rows(m: ModelEval) -> list[tuple[str, str]]:
    """The figures of one model, as (label, value) rows in report order.

    A figure of a judge without signal on this run (``harm.no_signal``,
    ``helpfulness.no_signal``) prints as ``no signal (why)``, never as a rate.
    """
    h, o, w, k = m.harm, m.over_refusal, m.helpfulness, m.hacking
    hs, ws = (h.no_signal if h else None), (w.no_signal if w else None)
    lc = (fmt(w.lc_win_rate_interval) if w and w.lc_win_rate_interval
          else _num(w.lc_win_rate if w else None, ".1%"))
    return [
        ("harmful compliance on red-team prompts (judge)", judged(fmt(h.harmful if h else None), hs)),
        ("mean judge p(harmful) on red-team answers", judged(_num(h.mean_p_harmful if h else None), hs)),
        ("refusal on red-team prompts (detector)", fmt(h.refusal if h else None)),
        ("over-refusal: refusal on safe look-alikes (XSTest safe)", fmt(o.safe_refusal if o else None)),
        ("refusal on their unsafe contrasts (XSTest unsafe)", fmt(o.unsafe_refusal if o else None)),
        (f"win rate vs {w.baseline if w else 'baseline'} (both orders)",
         judged(fmt(w.win_rate if w else None), ws)),
        ("length-controlled win rate", judged(lc, ws)),
        ("boilerplate rate", _num(k.boilerplate_rate if k else None, ".1%")),
        ("preference-model score vs length (Pearson r)", _num(k.pm_length_corr if k else None)),
        ("preference model vs judge disagreement",
         judged(_num(k.pm_judge_disagreement if k else None, ".1%"),
                hs if k and k.pm_judge_disagreement is not None else None)),
        ("KL from reference (nats per answer)", _num(k.kl_from_reference if k else None)),
        ("mean answer length (chars)", _num(m.mean_answer_chars, ".0f")),
        *mc_rows(m),  # TruthfulQA and BBQ, when run (cai/eval/report_mc.py)
    ]


def to_markdown(summary: EvalSummary) -> str:
    """The report as markdown: the figures (one column per model), the judges' trustworthiness on this run,
    the before/after comparison, answers side by side, and a sample of the training data."""
    names = [m.name for m in summary.models]
    rows = [table_rows(m) for m in summary.models]
    lines = ["# Evaluation", ""]
    if summary.constitution:
        c = summary.constitution
        lines.append(f"Constitution: **{c.name}** v{c.version} (hash `{c.hash[:12]}`); feedback model: "
                     f"`{summary.feedback_model}`{_judge_note(summary)}.")
        lines.append("")
    lines.append("| figure | " + " | ".join(_md_cell(n) for n in names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for i, (label, _) in enumerate(rows[0] if rows else []):
        lines.append(f"| {label} | " + " | ".join(_md_cell(r[i][1]) for r in rows) + " |")
    lines.append("")
    lines.append("Intervals are 95% Wilson intervals. Refusals are counted by the refusal detector "
                 "(`cai/scoring/refusal.py`: named phrase rules, then a small shipped classifier); harm is "
                 "judged by the feedback model against the constitution.")
    lines += ["", "## Judges on this run", ""] + [f"- {line}" for line in judge_lines(summary)]
    lines += segments_markdown(summary)  # every rate by a prompt-set column (cai/eval/report_segments.py)
    lines += matrix_markdown(summary)  # models x prompt sets (cai/eval/report_matrix.py)
    lines += mc_markdown(summary)
    lines += studies_markdown(summary)  # guard, counterfactual, best-of-n, PM probes (report_studies.py)
    lines += ["", *rounds_markdown(summary)] if rounds_markdown(summary) else []  # rounds: N recipes
    if summary.comparisons:
        lines += ["", f"## Before/after against {_md_cell(_baseline(summary))}", "",
                  COMPARISON_LEGEND + ".", "",
                  "| figure | model | value | change vs baseline [95% CI] | verdict |",
                  "|---|---|---|---|---|"]
        for r in comparison_rows(summary):
            verdict = f"**{r['verdict']}**" if r["regression"] else r["verdict"]
            lines.append(f"| {r['figure']} | {_md_cell(r['model'])} | {_md_cell(r['value'])} | "
                         f"{r['change']} | {_md_cell(verdict)} |")
    if summary.samples:
        lines += ["", "## Answers side by side", "", SAMPLES_NOTE, ""]
        for k, sp in enumerate(summary.samples, 1):
            label = f", label {sp.label}" if sp.label else ""
            lines += [f"### {k}. {sp.set}{label} (prompt `{sp.prompt_id[:12].replace('`', '')}`)", "",
                      "Prompt:", "", *_fenced(_conversation(sp.prompt)), ""]
            for a in sp.answers:
                lines += [f"**{_md_cell(a.model)}**: {answer_note(a)}", "", *_fenced(shown_text(a.text)), ""]
    if summary.training_data:
        lines += ["", "## Training data (sample)", ""]
        for t in summary.training_data:
            lines += [f"### {_md_cell(t.name)}: `{_md_cell(t.path)}` ({t.rows} rows, {t.kind})", ""]
            lines += [f"**{_md_cell(t.note)}**", ""] if t.note else []
            for ex in t.examples:
                lines += [f"Line {ex.get('line')}: " + training_note(t.kind, ex), "", "Prompt:", "",
                          *_fenced(_conversation(ex.get("prompt") or [])), ""]
                for field in ("completion", "chosen", "rejected"):
                    if field in ex:
                        lines += [f"{field.capitalize()}:", "", *_fenced(str(ex[field])), ""]
    if summary.labeler_audit:
        lines += ["", "## AI labeler audit", "", _audit_line(summary.labeler_audit)]
    return "\n".join(lines).rstrip() + "\n"


SAMPLES_NOTE = ("A seeded draw of prompts of each set, the baseline's answer first. Beside each "
                "answer: the refusal detector's verdict and the rule that fired, and the judge's score "
                "(p(harmful) on red-team prompts, p(win vs the baseline) on benign ones).")


def _baseline(summary: EvalSummary) -> str:
    return summary.baseline or (summary.models[0].name if summary.models else "baseline")


def _md_cell(text: str) -> str:
    """Text safe in a markdown table cell: pipes escaped, no line breaks, no raw HTML.

    >>> _md_cell("a|b <i>\\nc")
    'a\\\\|b &lt;i&gt; c'
    """
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def _fenced(text: str) -> list[str]:
    """Text as a fenced code block whose fence is longer than any backtick run inside (shown verbatim).

    >>> _fenced("use ```x```")
    ['````text', 'use ```x```', '````']
    """
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", text, fence]


def _conversation(messages: list[dict[str, str]]) -> str:
    """A prompt as text: a single user turn as is, a conversation with its roles.

    >>> _conversation([{"role": "user", "content": "hi"}])
    'hi'
    >>> _conversation([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
    ...                {"role": "user", "content": "go"}])
    'user: hi\\nassistant: yo\\nuser: go'
    """
    if len(messages) == 1 and messages[0].get("role") == "user":
        return messages[0].get("content", "")
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)


def shown_text(text: str) -> str:
    """An answer as shown: ``(empty answer)`` when it has no visible text.

    >>> shown_text("  \\n"), shown_text("ok")
    ('(empty answer)', 'ok')
    """
    return text if text.strip() else "(empty answer)"


def answer_note(a: SampleAnswer) -> str:
    """The refusal detector's verdict (and rule) and the judge's score of one shown answer.

    >>> answer_note(SampleAnswer(model="m", text="", refused=True, rule="empty", score=0.46,
    ...                          score_name="p(harmful)"))
    'refused (rule: empty); p(harmful) 0.46'
    >>> answer_note(SampleAnswer(model="m", text="ok", refused=False))
    'complies (no refusal rule fired)'
    """
    verdict = f"refused (rule: {a.rule})" if a.refused else "complies (no refusal rule fired)"
    return verdict + (f"; {a.score_name} {a.score:.2f}" if a.score is not None and a.score_name else "")


def training_note(kind: str, ex: dict[str, Any]) -> str:
    """What the report says about one training row.

    >>> training_note("preferences", {"p_chosen": 0.71, "position_consistent": False, "source": "ai"})
    'p_chosen 0.71, position consistent: no (source ai)'
    >>> training_note("sft", {})
    'SFT row (prompt and completion)'
    """
    if kind != "preferences":
        return "SFT row (prompt and completion)" if kind == "sft" else "row"
    p, pc, src = ex.get("p_chosen"), ex.get("position_consistent"), ex.get("source")
    parts = [f"p_chosen {p:.2f}" if isinstance(p, (int, float)) else "p_chosen -",
             "position consistent: " + ("-" if pc is None else "yes" if pc else "no")]
    return ", ".join(parts) + (f" (source {src})" if src else "")


def _pct(x: Any) -> str:
    return f"{100 * x:.0f}%" if isinstance(x, (int, float)) else "-"


def shipped_refusal_figures() -> str:
    """What the shipped refusal classifier's card says it measured on held-out human-labelled answers.

    >>> shipped_refusal_figures().startswith("its card: held-out accuracy")
    True
    """
    from cai.scoring.refusal import classifier_card

    held = (classifier_card().get("measured") or {}).get("held_out") or {}
    runs = [r.get("detector (rules + classifier)") for split in held.values() for r in split.values()]
    runs = [r for r in runs if r]
    if not runs:
        return "its card records no held-out measurement."
    acc = ", ".join(f"{r['accuracy']:.3f}" for r in runs)
    rec = ", ".join(f"{r['recall']:.3f}" for r in runs)
    return (f"its card: held-out accuracy {acc} and recall {rec} on halves of 1,105 human-labelled answers "
            "of five chat models (XSTest completions).")


def judge_lines(summary: EvalSummary) -> list[str]:
    """How trustworthy each judge was on this run, one plain-text line per judge (harm, refusal, helpfulness).

    >>> from cai.eval.schema import JudgeSignal
    >>> s = EvalSummary(models=[], judges={"harm": JudgeSignal(judge="harm", method="harm-rubric",
    ...     model="default", n=80, mean=0.462, score_sd=0.0, signal=False,
    ...     reason="judge scores constant: sd 0.000")})
    >>> print(judge_lines(s)[0])  # doctest: +NORMALIZE_WHITESPACE
    Harm judge (harm-rubric, model default): p(harmful) of 80 answers has mean 0.462 and sd 0.000; not audited
    against human labels on this run (run `cai audit judge`, pass --judge-audit). NO SIGNAL: judge scores
    constant: sd 0.000; its figures print as "no signal".
    """
    out = []
    if not summary.judges and summary.models and all(m.harm is None and m.helpfulness is None
                                                     and m.over_refusal is None for m in summary.models):
        return ["No judge ran: no prompt set (the multiple-choice benchmarks are read from log-probs)."]
    if not summary.judges:
        return ["Judge spread and audits were not recorded (an eval.json from an older cai): "
                "treat every judged figure as unaudited."]
    h = summary.judges.get("harm")
    if h is None:
        out.append("Harm judge: not run (no red-team prompts).")
    else:
        out.append(_judge_line("Harm judge", "p(harmful)", "answers", h,
                               audit_hint="run `cai audit judge`, pass "
                               "--judge-audit"))
    r = summary.judges.get("refusal")
    audit = r.audit if r else None
    if audit:
        n = f" on {audit['n']} human-labelled answers" if isinstance(audit.get("n"), int) else ""
        line = (f"Refusal detector (phrase rules + classifier, cai/scoring/refusal.py): audited accuracy "
                f"{_pct(audit.get('accuracy'))}, precision {_pct(audit.get('precision'))}, recall "
                f"{_pct(audit.get('recall'))}{n}.")
        if audit.get("in_sample"):  # the audit file trained the shipped classifier: optimistic figures
            share = (audit.get("in_sample_rows") or {}).get("rate")
            line += (f" In-sample: {_pct(share)} of those answers trained the shipped classifier, so these "
                     f"figures are optimistic; {shipped_refusal_figures()}")
        out.append(line)
    else:
        out.append("Refusal detector: phrase rules + a small classifier (cai/scoring/refusal.py), not "
                   "audited on this run (run `cai audit refusal`, pass --refusal-audit); "
                   f"{shipped_refusal_figures()} It reads the opening of an answer: it can miss late or "
                   "paraphrased refusals and count an apologetic answer that complies as a refusal, more so "
                   "on a small model's degenerate text than on the chat models it was measured on.")
    w = summary.judges.get("helpfulness")
    if w is None:
        out.append("Helpfulness judge: not run (no benign prompts, or no model besides the baseline).")
    else:
        out.append(_judge_line("Helpfulness judge", "p(win)", "pairs", w, audit_hint=None))
    return out


def _judge_line(title: str, score: str, items: str, s: Any, audit_hint: str | None) -> str:
    head = f"{title} ({s.method}" + (f", model {s.model}" if s.model else "") + ")"
    if s.score_sd is None:
        body = f"{s.n} {items} judged: too few to measure its spread"
    else:
        body = f"{score} of {s.n} {items} has mean {s.mean:.3f} and sd {s.score_sd:.3f}"
    if s.failures:
        body += f" ({s.failures} failed)"
    if s.identical_pairs:
        body += f" ({s.identical_pairs} pairs of identical answers left out: ties by construction)"
    c = s.consistency
    if c is not None and c.n:
        body += (f"; its two {s.consistency_kind or 'reads'} agree on {100 * c.rate:.0f}% "
                 f"[{100 * c.lo:.0f}, {100 * c.hi:.0f}] of them")
    if s.audit:
        acc = s.audit.get("accuracy") or {}
        body += (f"; audit: {_pct(acc.get('rate'))} [{_pct(acc.get('lo'))[:-1]}, {_pct(acc.get('hi'))[:-1]}] "
                 f"agreement on {acc.get('n', '?')} human pairs")
        if s.audit.get("verdict"):
            body += f" ({s.audit['verdict']})"
    elif audit_hint:
        body += f"; not audited against human labels on this run ({audit_hint})"
    if s.signal is False:
        tail = f' NO SIGNAL: {s.reason}; its figures print as "no signal".'
    elif s.signal:
        tail = " Its scores vary (sd at least 0.02)" + (" and its audit is above chance." if s.audit else ".")
    else:
        tail = ""
    return f"{head}: {body}.{tail}"


def _judge_note(summary: EvalSummary) -> str:
    """How harm was judged, from the settings (empty when unknown).

    >>> _judge_note(EvalSummary(models=[], settings={"judge": "rubric", "max_new_tokens": 96}))
    '; harm judge: rubric; greedy answers of up to 96 tokens'
    """
    judge, tokens = summary.settings.get("judge"), summary.settings.get("max_new_tokens")
    return ((f"; harm judge: {judge}" if judge else "")
            + (f"; greedy answers of up to {tokens} tokens" if tokens else ""))


def _audit_line(audit: dict[str, Any]) -> str:
    verdict = audit.get("verdict") or ""
    agree = audit.get("agreement", {}).get("both") if isinstance(audit.get("agreement"), dict) else None
    if isinstance(agree, dict) and "rate" in agree:
        return (f"Agreement with human labels (both orders): {100 * agree['rate']:.1f}% "
                f"[{100 * agree.get('lo', 0):.1f}–{100 * agree.get('hi', 1):.1f}]. {verdict}")
    return str(verdict)


# ------------------------------------------------------------------------------------------- plots


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def spread_overlaps(points: list[tuple[float, float]], radius: float = 0.02, step: float = 0.012,
                    ) -> list[tuple[float, float, int, int]]:
    """For each point: a small horizontal offset so overlapping points sit side by side, its rank and group
    size.

    Points closer than ``radius`` on both axes form a group; a group of ``g`` points is
    spread ``step`` apart around its place (``g == 1``: no offset).

    >>> spread_overlaps([(0.1, 0.1), (0.1, 0.1), (0.5, 0.2)])
    [(-0.006, 0.0, 0, 2), (0.006, 0.0, 1, 2), (0.0, 0.0, 0, 1)]
    """
    groups: list[list[int]] = []
    for i, (x, y) in enumerate(points):
        for g in groups:
            gx, gy = points[g[0]]
            if abs(gx - x) < radius and abs(gy - y) < radius:
                g.append(i)
                break
        else:
            groups.append([i])
    out: list[tuple[float, float, int, int]] = [(0.0, 0.0, 0, 1)] * len(points)
    for g in groups:
        for rank, i in enumerate(g):
            out[i] = (round((rank - (len(g) - 1) / 2) * step, 12), 0.0, rank, len(g))
    return out


def plot_harm_vs_overrefusal(summary: EvalSummary) -> str | None:
    """Scatter of harm (y) against over-refusal (x), one point per model, with 95% error bars.

    Each model has its own marker; models at (nearly) the same point are set side by
    side and labelled with leader lines, so none hides another. When the harm judge
    showed no signal, the y axis is the detector's red-team refusal rate instead.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    no_signal = any(m.harm.no_signal for m in summary.models if m.harm)
    pts = []
    for m in summary.models:
        harm = (m.harm.refusal if no_signal else (m.harm.harmful or m.harm.refusal)) if m.harm else None
        over = m.over_refusal.safe_refusal if m.over_refusal else None
        if harm is not None and over is not None:
            pts.append((m.name, over, harm, m.harm.harmful is not None and not no_signal))
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    offsets = spread_overlaps([(x.rate, y.rate) for _, x, y, _ in pts])
    for k, ((name, x, y, _judged), (dx, _dy, rank, size)) in enumerate(zip(pts, offsets)):
        px, py = x.rate + dx, y.rate
        ax.errorbar(px, py, xerr=[[x.rate - x.lo], [x.hi - x.rate]], yerr=[[y.rate - y.lo], [y.hi - y.rate]],
                    fmt=MARKERS[k % len(MARKERS)], markersize=7, capsize=3, label=name, alpha=0.85,
                    markerfacecolor="none" if rank else None)
        if size > 1:  # a fan of labels, each tied to its point by a leader line
            ax.annotate(name, (px, py), textcoords="offset points", xytext=(18, 10 + 14 * rank), fontsize=8,
                        arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "grey"})
        else:
            ax.annotate(name, (px, py), textcoords="offset points", xytext=(6, 6), fontsize=8)
    judged = all(p[3] for p in pts)
    ax.set_xlabel("over-refusal (refusal rate on safe look-alikes)")
    if judged:
        ax.set_ylabel("harmful compliance (judge)")
        ax.set_title("Harm vs over-refusal (lower-left is better)")
    else:
        ax.set_ylabel("refusal on red-team prompts (detector)")
        ax.set_title("Refusal trade-off" + (" (harm judge: no signal)" if no_signal else ""))
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
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
    """Reliability diagram from an audit's bins: the labeler's confidence in its pick vs observed
    agreement."""
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
        ax.annotate(str(b["n"]), (b["confidence"], b["accuracy"]), fontsize=7, textcoords="offset points",
                    xytext=(3, -9))
    ax.set_xlabel("labeler confidence in its pick")
    ax.set_ylabel("observed agreement")
    ece = audit.get("ece")
    ax.set_title("Labeler reliability" + (f" (ECE {ece:.3f})" if isinstance(ece, (int, float)) else ""))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


# -------------------------------------------------------------------------------------------- html


def _html_block(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def _comparison_html(summary: EvalSummary) -> str:
    rows = []
    for r in comparison_rows(summary):
        cls = ' class="regression"' if r["regression"] else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(r[k])}</td>" for k in
                                          ("figure", "model", "value", "change", "verdict")) + "</tr>")
    return (f"<h2>Before/after against {html.escape(_baseline(summary))}</h2>"
            f"<p>{html.escape(COMPARISON_LEGEND)}.</p><table id=\"before-after\"><thead><tr><th>figure</th>"
            "<th>model</th><th>value</th><th>change vs baseline [95% "
            "CI]</th><th>verdict</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _samples_html(summary: EvalSummary) -> str:
    parts = [f'<h2>Answers side by side</h2><p>{html.escape(SAMPLES_NOTE)}</p><div id="samples">']
    for k, sp in enumerate(summary.samples, 1):
        label = f", label {sp.label}" if sp.label else ""
        head = "".join(f"<th>{html.escape(a.model)}</th>" for a in sp.answers)
        cells = "".join(f'<td>{_html_block(shown_text(a.text))}<div '
                        f'class="note">{html.escape(answer_note(a))}'
                        "</div></td>" for a in sp.answers)
        parts.append(f'<div class="sample"><h3>{k}. {html.escape(sp.set + label)} '
                     f"<small>(prompt <code>{html.escape(sp.prompt_id[:12])}</code>)</small></h3>"
                     f"{_html_block(_conversation(sp.prompt))}"
                     f'<table class="side"><thead><tr>{head}</tr></thead><tbody><tr>{cells}</tr></tbody>'
                     "</table></div>")
    return "".join(parts) + "</div>"


def _training_html(summary: EvalSummary) -> str:
    parts = ['<h2>Training data (sample)</h2><div id="training-data">']
    for t in summary.training_data:
        parts.append(f"<h3>{html.escape(t.name)}: <code>{html.escape(t.path)}</code> "
                     f"({t.rows} rows, {html.escape(t.kind)})</h3>")
        if t.note:
            parts.append(f"<p><b>{html.escape(t.note)}</b></p>")
        for ex in t.examples:
            fields = "".join(f"<p>{f.capitalize()}:</p>{_html_block(str(ex[f]))}"
                             for f in ("completion", "chosen", "rejected") if f in ex)
            parts.append(f'<div class="sample"><p>Line {ex.get("line")}: '
                         f'{html.escape(training_note(t.kind, ex))}'
                         f"</p><p>Prompt:</p>{_html_block(_conversation(ex.get('prompt') or []))}"
                         f"{fields}</div>")
    return "".join(parts) + "</div>"


def to_html(summary: EvalSummary) -> str:
    """One self-contained HTML page: the table, the judges, the before/after, every plot that has data,
    answers side by side and the training data sample. Every model-written text is escaped."""
    names = [m.name for m in summary.models]
    rows = [table_rows(m) for m in summary.models]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)

    def cell(v: str) -> str:
        text = html.escape(v)
        return f'<span class="nosignal">{text}</span>' if v.startswith("no signal") else text

    body = "".join(
        "<tr><td>" + html.escape(label) + "</td>"
        + "".join(f"<td>{cell(r[i][1])}</td>" for r in rows) + "</tr>"
        for i, (label, _) in enumerate(rows[0] if rows else [])
    )
    plots = [
        ("harm-vs-overrefusal", "Harm vs over-refusal", plot_harm_vs_overrefusal(summary)),
        ("training-curves", "Training curves", plot_curves(summary.curves) if summary.curves else None),
        ("reliability", "AI labeler reliability",
         plot_reliability(summary.labeler_audit) if summary.labeler_audit else None),
    ]
    figures = "".join(
        f'<figure id="{pid}"><figcaption>{title}</figcaption><img alt="{title}" '
        f'src="data:image/png;base64,{data}"></figure>'
        for pid, title, data in plots if data
    )
    const = ""
    if summary.constitution:
        c = summary.constitution
        const = (f"<p>Constitution <b>{html.escape(c.name)}</b> v{html.escape(c.version)} "
                 f"(hash <code>{html.escape(c.hash[:12])}</code>); feedback model "
                 f"<code>{html.escape(str(summary.feedback_model))}</code>{html.escape(_judge_note(summary))}.</p>")
    audit = f"<p>{html.escape(_audit_line(summary.labeler_audit))}</p>" if summary.labeler_audit else ""
    judges = ('<h2>Judges on this run</h2><ul id="judges">'
              + "".join(f"<li>{html.escape(line)}</li>" for line in judge_lines(summary)) + "</ul>")
    compared = _comparison_html(summary) if summary.comparisons else ""
    segments = segments_html(summary) + matrix_html(summary)  # report_segments.py, report_matrix.py
    benchmarks = mc_html(summary) + rounds_html(summary) + studies_html(summary)
    samples = _samples_html(summary) if summary.samples else ""
    training = _training_html(summary) if summary.training_data else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cai evaluation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 14px; vertical-align: top; }}
th {{ background: #f3f3f3; }}
tr.regression td {{ color: #b00020; font-weight: 600; background: #fdecee; }}
.nosignal {{ color: #777; font-style: italic; }}
table.side {{ width: 100%; table-layout: fixed; }}
pre {{ white-space: pre-wrap; word-wrap: break-word; background: #f8f8f8; padding: 6px; margin: 4px 0;
       font-size: 13px; }}
.note {{ color: #555; font-size: 12px; }}
.sample {{ border-top: 1px solid #eee; margin-top: 1em; }}
figure {{ display: inline-block; margin: 1em 1em 1em 0; vertical-align: top; }}
figcaption {{ font-weight: 600; margin-bottom: 4px; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>cai evaluation</h1>
{const}
<table id="summary"><thead><tr><th>figure</th>{head}</tr></thead><tbody>{body}</tbody></table>
<p>Intervals are 95% Wilson intervals. Refusals: phrase rules and a small classifier \
(<code>cai/scoring/refusal.py</code>).
Harm: judged by the feedback model against the constitution.</p>
{judges}
{segments}
{benchmarks}
{compared}
{audit}
{figures}
{samples}
{training}
<p><small>generated {html.escape(summary.created_at)}</small></p>
<script>{IMAGE_CHECK}</script>
</body></html>
"""
