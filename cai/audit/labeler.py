"""How far the AI labeler agrees with humans: intervals, order flips, calibration, per principle.

The audit labels human pairs (``answer_a`` = the human-chosen answer, see
:func:`cai.stages.label.labeler.load_pairs_for_audit`) and compares. Per pair it reads the
labeler's p(human-chosen is better):

* ``a_first``: only from the order that shows the human-chosen answer as (A);
* ``b_first``: only from the order that shows it as (B);
* ``both``: the mean of the two (the debiased soft label ``cai label`` writes).

Agreement is ``p > 0.5`` (an exact 0.5 counts as disagreement) with a 95%
Wilson interval. The flip rate is the share of pairs whose pick changes (or
ties) when the order flips. Calibration bins the labeler's confidence in its own
pick, ``max(p, 1 - p)`` over [0.5, 1], against how often that pick is the
human's; this is the calibration of p(human-chosen) folded at 0.5, since
p(human-chosen) is the confidence when the pick agrees and one minus it when it
does not. ECE is the count-weighted mean gap ``|accuracy - confidence|`` over
bins. Brier score and log loss of p(human-chosen) are given too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai.core.records import LabelRecord
from cai.core.stats import proportion
from cai.stages.label.feedback import unswap

CHANCE_VERDICT = "near chance on these pairs: use a larger feedback model"




def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = 5,
                     low: float = 0.5) -> list[dict[str, Any]]:
    """Equal-width bins over ``[low, 1]``: each with ``lo``, ``hi``, ``n``, mean ``confidence``, ``accuracy``.

    The last bin includes 1; empty bins have ``None`` confidence and accuracy.

    >>> b = reliability_bins([0.55, 0.65, 0.95, 0.95], [True, False, True, True], bins=5)
    >>> [(x["n"], x["accuracy"]) for x in b]
    [(1, 1.0), (1, 0.0), (0, None), (0, None), (2, 1.0)]
    """
    if len(confidence) != len(correct):
        raise ValueError("confidence and correct differ in length")
    width = (1.0 - low) / bins
    groups: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for c, ok in zip(confidence, correct):
        groups[min(bins - 1, max(0, int((c - low) / width + 1e-9)))].append((c, ok))
    out = []
    for i, g in enumerate(groups):
        out.append({
            "lo": round(low + i * width, 6), "hi": round(low + (i + 1) * width, 6), "n": len(g),
            "confidence": sum(c for c, _ in g) / len(g) if g else None,
            "accuracy": sum(ok for _, ok in g) / len(g) if g else None,
        })
    return out


def expected_calibration_error(bins: Sequence[dict[str, Any]]) -> float | None:
    """Count-weighted mean of ``|accuracy - confidence|`` over non-empty bins.

    >>> b = reliability_bins([0.55, 0.65, 0.95, 0.95], [True, False, True, True], bins=5)
    >>> round(expected_calibration_error(b), 6)   # (0.45 + 0.65 + 2 * 0.05) / 4
    0.3
    """
    total = sum(b["n"] for b in bins)
    if not total:
        return None
    return sum(b["n"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["n"]) / total


def verdict(both: dict[str, Any]) -> str:
    """One plain sentence on the both-orders agreement interval.

    >>> verdict(proportion(55, 100))
    'near chance on these pairs: use a larger feedback model'
    >>> verdict(proportion(90, 100))
    'agrees with the human choice more often than chance (95% interval above 50%)'
    """
    if not both["n"]:
        return "no pair was labelled: nothing to compare"
    if both["lo"] <= 0.5 <= both["hi"]:
        return CHANCE_VERDICT
    if both["lo"] > 0.5:
        return "agrees with the human choice more often than chance (95% interval above 50%)"
    return ("disagrees with the human choice more often than chance (95% interval below 50%): check the "
            "comparison questions, or use a larger feedback model")


def principle_reads(record: LabelRecord) -> dict[str, float]:
    """p(answer_a better) per used principle, both orders averaged, from a label's judgements.

    >>> from cai.core.records import Judgement, Provenance, Message
    >>> m = [Message(role="assistant", content="x")]
    >>> r = LabelRecord(id="i", pair_id="p", prompt=[Message(role="user", content="q")], answer_a=m,
    ...     answer_b=[Message(role="assistant", content="y")], status="ok", principle_ids=["s"],
    ...     used_principle_ids=["s"], provenance=Provenance(), judgements=[
    ...     Judgement(principle_id="s", order="ab", method="logprobs", p_option_a=0.9),
    ...     Judgement(principle_id="s", order="ba", method="logprobs", p_option_a=0.7)])
    >>> {k: round(v, 6) for k, v in principle_reads(r).items()}
    {'s': 0.6}
    """
    reads: dict[str, dict[str, float]] = {}
    for j in record.judgements:
        if j.p_option_a is not None and j.principle_id in record.used_principle_ids:
            reads.setdefault(j.principle_id, {})[j.order] = unswap(j.p_option_a, j.order)
    return {pid: (r["ab"] + r["ba"]) / 2 for pid, r in reads.items() if "ab" in r and "ba" in r}


def audit_labels(labels: Sequence[LabelRecord], bins: int = 5) -> dict[str, Any]:
    """Agreement, flip rate, calibration and per-principle agreement of labels of human pairs.

    Each label's ``answer_a`` must be the human-chosen answer.
    """
    ok = [r for r in labels if r.status == "ok" and r.p_a is not None]
    n = len(ok)
    p_both = [r.p_a for r in ok]
    agree = {
        "a_first": proportion(sum(r.p_a_ab > 0.5 for r in ok), n),  # type: ignore[operator]
        "b_first": proportion(sum(r.p_a_ba > 0.5 for r in ok), n),  # type: ignore[operator]
        "both": proportion(sum(p > 0.5 for p in p_both), n),  # type: ignore[operator]
    }
    confidence = [max(p, 1 - p) for p in p_both]  # type: ignore[type-var, operator]
    correct = [p > 0.5 for p in p_both]  # type: ignore[operator]
    rel = reliability_bins(confidence, correct, bins)
    per_principle: dict[str, list[bool]] = {}
    for r in ok:
        for pid, p in principle_reads(r).items():
            per_principle.setdefault(pid, []).append(p > 0.5)
    reads = [j for r in labels for j in r.judgements if j.p_option_a is not None]
    return {
        "pairs": len(labels),
        "labelled": n,
        "failed": len(labels) - n,
        "agreement": agree,
        "flip_rate": proportion(sum(not r.position_consistent for r in ok), n),
        "option_a_rate": proportion(sum(j.p_option_a > 0.5 for j in reads), len(reads)),  # type: ignore[operator]
        "reliability": rel,
        "ece": expected_calibration_error(rel),
        "brier": sum((1 - p) ** 2 for p in p_both) / n if n else None,  # type: ignore[operator]
        "log_loss": sum(-math.log(max(p, 1e-12)) for p in p_both) / n if n else None,  # type: ignore[type-var]
        "mean_p_human_chosen": sum(p_both) / n if n else None,  # type: ignore[arg-type]
        "per_principle": {pid: proportion(sum(v), len(v)) for pid, v in sorted(per_principle.items())},
        "verdict": verdict(agree["both"]),
    }


def _pct(d: dict[str, Any]) -> str:
    if d["rate"] is None:
        return "n/a"
    return f"{100 * d['rate']:5.1f}%  [{100 * d['lo']:.1f}, {100 * d['hi']:.1f}]  ({d['k']}/{d['n']})"


def format_audit(audit: dict[str, Any]) -> str:
    """The audit as a plain-text table."""
    a = audit["agreement"]
    lines = [
        f"pairs {audit['pairs']}: labelled {audit['labelled']}, failed {audit['failed']}",
        "agreement with the human choice (95% Wilson interval):",
        f"  human-chosen shown as (A) only   {_pct(a['a_first'])}",
        f"  human-chosen shown as (B) only   {_pct(a['b_first'])}",
        f"  both orders averaged             {_pct(a['both'])}",
        f"choice flips when the order flips  {_pct(audit['flip_rate'])}",
        f"reads answering (A)                {_pct(audit['option_a_rate'])}",
    ]
    if audit["ece"] is not None:
        lines.append(f"calibration: ECE {audit['ece']:.3f}, Brier {audit['brier']:.3f}, log loss "
                     f"{audit['log_loss']:.3f}, mean p(human-chosen) {audit['mean_p_human_chosen']:.3f}")
        lines.append("  confidence bin   n   mean confidence   agreement")
        for b in audit["reliability"]:
            conf = "" if b["confidence"] is None else f"{b['confidence']:.3f}"
            acc = "" if b["accuracy"] is None else f"{b['accuracy']:.3f}"
            lines.append(f"  {b['lo']:.2f}-{b['hi']:.2f}   {b['n']:>5}   {conf:>15}   {acc:>9}")
    if audit["per_principle"]:
        lines.append("agreement per principle (both orders):")
        for pid, d in audit["per_principle"].items():
            lines.append(f"  {pid:<28} {_pct(d)}")
    lines.append(f"verdict: {audit['verdict']}")
    return "\n".join(lines)


def plot_reliability(audit: dict[str, Any], path: Path) -> Path:
    """A PNG reliability diagram: the labeler's confidence in its pick vs agreement with humans."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in audit["reliability"] if b["n"]]
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0.5, 1], [0.5, 1], "--", color="grey", label="perfect calibration")
    ax.axhline(0.5, color="lightgrey", linewidth=0.8)
    if bins:
        ax.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["accuracy"] for b in bins],
               width=[(b["hi"] - b["lo"]) * 0.9 for b in bins], alpha=0.35, color="tab:blue")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color="tab:blue",
                label="AI labeler")
        for b in bins:
            ax.annotate(f"n={b['n']}", (b["confidence"], b["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 4))
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("labeler confidence in its pick, max(p, 1-p)")
    ax.set_ylabel("agreement with the human choice")
    ece = audit.get("ece")
    both = audit["agreement"]["both"]
    title = "AI labeler reliability"
    if ece is not None and both["rate"] is not None:
        title += f"\nECE {ece:.3f}, agreement {100 * both['rate']:.1f}% (n={both['n']})"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def run_labeler_audit(pairs_file: Path, constitution: Any, feedback: Any, config: Any, out_dir: Path, *,
                      limit: int | None = None, bins: int = 5) -> dict[str, Any]:
    """``cai audit labeler``: label the human pairs of ``pairs_file`` (resumable), write ``audit.json`` and
    the plot.

    ``feedback`` is the labeller's :class:`~cai.backends.spec.BackendSpec`, ``config`` a
    :class:`~cai.stages.label.stage.LabelStageConfig`. Returns the audit (with its settings).
    """
    from cai.core.atomic_files import write_json_atomic
    from cai.core.errors import CaiError
    from cai.stages.label.outputs import labels_in_order
    from cai.stages.label.pairs import load_pairs_for_audit
    from cai.stages.label.stage import label_into

    if bins < 1:
        raise CaiError(f"--bins {bins}: need at least 1")
    pairs = load_pairs_for_audit(pairs_file, limit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labeler = config.labeler()
    ids = label_into(out / "labels.jsonl", pairs, constitution, feedback, labeler, what="pair", desc="audit")
    audit = audit_labels(labels_in_order(out / "labels.jsonl", ids), bins)
    audit["settings"] = {"pairs_file": str(pairs_file), "limit": limit, "seed": config.seed,
                         "feedback_model": feedback.name, "feedback_backend": feedback.backend,
                         "constitution": constitution.ref().model_dump(), "config": labeler.identity()}
    write_json_atomic(out / "audit.json", audit)
    plot_reliability(audit, out / "reliability.png")
    return audit
