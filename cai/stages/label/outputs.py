"""Files derived from ``labels.jsonl``: the filtered ``preferences.jsonl`` and ``stats.json``.

``labels.jsonl`` is append-only and keeps every label, failures included. The
derived files are rebuilt from it on every run, deterministically (pairs in
input order), and written atomically (temp file + ``os.replace``), so changing
``--min-confidence`` or ``--drop-inconsistent`` never re-runs the model.

Filters apply to AI labels only; human pairs (``--human``) are merged after
them with ``source: "human"`` and their weight multiplied by ``--human-weight``.
An exact tie (``p_a == 0.5``: the reader could not tell the answers apart, e.g. it
wrote the same letter in both orders) names no better answer, so it is dropped
unless ``keep_ties`` (it would otherwise become a preference for ``answer_a``).

Human rows may carry ``pool`` (their annotator group); their weights may then be set per
pool (:mod:`cai.stages.label.pools`), and ``stats.json`` gets a ``pools`` section: the
weighting and the rows and total weight each pool got.

``stats.json`` carries the verdict of :func:`cai.stages.label.signal.label_signal`
under ``"signal"``: whether the labels carry any signal at all.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.core.atomic_files import write_json_atomic, write_records_atomic
from cai.core.errors import CaiError
from cai.core.records import LabelRecord, PreferenceRecord
from cai.stages.label.labeler import to_preference
from cai.stages.label.pools import PoolWeighting, effective_weights
from cai.stages.label.signal import label_signal


@dataclass(frozen=True)
class Filters:
    """Which AI labels become preferences: ``p_chosen >= min_confidence``, optionally only consistent ones.

    Exact ties (``p_a == 0.5``) are dropped unless ``keep_ties``.
    """

    min_confidence: float = 0.5
    drop_inconsistent: bool = False
    keep_ties: bool = False

    def __post_init__(self) -> None:
        if not 0.5 <= self.min_confidence <= 1.0:
            raise CaiError(f"--min-confidence {self.min_confidence} is not between 0.5 and 1",
                           hint="p_chosen is always >= 0.5; e.g. --min-confidence 0.6")


def is_tie(record: LabelRecord) -> bool:
    """Whether a successful label is an exact tie (``p_a == 0.5``): it names no better answer.

    >>> from cai.core.records import Message, Provenance
    >>> m = lambda t: [Message(role="assistant", content=t)]
    >>> r = LabelRecord(id="i", pair_id="p", prompt=[Message(role="user", content="q")], answer_a=m("x"),
    ...     answer_b=m("y"), status="ok", p_a=0.5, p_a_ab=1.0, p_a_ba=0.0, principle_ids=["s"], judgements=[],
    ...     provenance=Provenance())
    >>> (is_tie(r), is_tie(r.model_copy(update={"p_a": 0.51})),
    ...  is_tie(r.model_copy(update={"status": "failed"})))
    (True, False, False)
    """
    return record.status == "ok" and record.p_a == 0.5


def select_preferences(labels: Sequence[LabelRecord],
                       filters: Filters) -> tuple[list[PreferenceRecord], Counter]:
    """The AI preferences that pass the filters, and counts of why the others were dropped.

    Reasons, checked in this order: ``failed``, ``ties`` (unless ``filters.keep_ties``),
    ``low_confidence``, ``inconsistent``.
    """
    kept: list[PreferenceRecord] = []
    dropped: Counter = Counter()
    for rec in labels:
        pref = to_preference(rec)
        if pref is None:
            dropped["failed"] += 1
        elif not filters.keep_ties and is_tie(rec):
            dropped["ties"] += 1
        elif pref.p_chosen < filters.min_confidence:
            dropped["low_confidence"] += 1
        elif filters.drop_inconsistent and not rec.position_consistent:
            dropped["inconsistent"] += 1
        else:
            kept.append(pref)
    return kept, dropped


def human_preferences(records: Iterable[PreferenceRecord], weight: float) -> list[PreferenceRecord]:
    """Human pairs marked ``source: "human"``, their weight multiplied by ``weight``.

    >>> r = PreferenceRecord.model_validate({"prompt": "q", "chosen": "a", "rejected": "b", "weight": 2})
    >>> h = human_preferences([r], 0.5)[0]
    >>> h.source, h.weight, h.p_chosen
    ('human', 1.0, 1.0)
    """
    if weight < 0:
        raise CaiError(f"--human-weight {weight} is negative", hint="use a weight >= 0, e.g. 1.0")
    return [r.model_copy(update={"source": "human", "weight": r.weight * weight}) for r in records]


# ----------------------------------------------------------------------------- stats


def confidence_histogram(values: Sequence[float], bins: int = 5) -> list[dict[str, Any]]:
    """Counts of ``p_chosen`` in equal bins over [0.5, 1] (the last bin includes 1).

    >>> [b["n"] for b in confidence_histogram([0.5, 0.55, 0.61, 0.99, 1.0], bins=5)]
    [2, 1, 0, 0, 2]
    """
    width = 0.5 / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - 0.5) / width + 1e-9)))] += 1
    return [{"lo": round(0.5 + i * width, 6), "hi": round(0.5 + (i + 1) * width, 6), "n": n}
            for i, n in enumerate(counts)]


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _sd(xs: Sequence[float]) -> float | None:
    """Population standard deviation (None for no values).

    >>> _sd([0.5, 0.7]), _sd([0.6]), _sd([])
    (0.1, 0.0, None)
    """
    return round(statistics.pstdev(xs), 12) if xs else None


def label_stats(labels: Sequence[LabelRecord], kept: Sequence[PreferenceRecord], dropped: Counter,
                n_human: int = 0) -> dict[str, Any]:
    """The run's summary: counts, consistency, confidence histogram, principles, lengths, failures.

    ``reads`` are single (principle, order) questions to the model; a failed read
    (unparsable letter, unusable log-probs) is counted, and a pair with no
    principle read in both orders is a failed pair. ``p_chosen_sd`` is the spread of
    ``p_chosen`` over labelled pairs, ``p_option_a_sd`` the spread of p(option A)
    over successful reads, ``tie_rate`` the share of labelled pairs that are
    exact ties (all three feed :func:`~cai.stages.label.signal.label_signal`).
    """
    ok = [r for r in labels if r.status == "ok"]
    prefs = [p for p in (to_preference(r) for r in ok) if p is not None]
    reads = [j for r in labels for j in r.judgements]
    methods = Counter(j.method for j in reads)
    failed_reads = Counter(j.method for j in reads if j.p_option_a is None)
    masses = [math.exp(j.logprobs[0]) + math.exp(j.logprobs[1]) for j in reads if j.logprobs is not None]
    scored = [j.p_option_a for j in reads if j.p_option_a is not None]
    per_principle: dict[str, dict[str, Any]] = {}
    for r in ok:
        for pid in r.used_principle_ids:
            d = per_principle.setdefault(pid, {"pairs": 0, "consistent": 0})
            d["pairs"] += 1
            d["consistent"] += bool(r.position_consistent)
    diffs = [len(p.chosen[-1].content) - len(p.rejected[-1].content) for p in kept]
    return {
        "pairs": len(labels),
        "labelled": len(ok),
        "failed_pairs": len(labels) - len(ok),
        "preferences": {"ai": len(kept), "human": n_human, "total": len(kept) + n_human},
        "dropped": {"failed": dropped.get("failed", 0), "ties": dropped.get("ties", 0),
                    "low_confidence": dropped.get("low_confidence", 0),
                    "inconsistent": dropped.get("inconsistent", 0)},
        "position_consistency_rate": _mean([float(bool(r.position_consistent)) for r in ok]),
        "mean_p_chosen": _mean([p.p_chosen for p in prefs]),
        "p_chosen_sd": _sd([p.p_chosen for p in prefs]),
        "p_option_a_sd": _sd(scored),
        "tie_rate": _mean([float(is_tie(r)) for r in ok]),
        "confidence_histogram": confidence_histogram([p.p_chosen for p in prefs]),
        "option_a_rate": _mean([float(p > 0.5) for p in scored]),
        "mean_option_mass": _mean(masses),
        "per_principle": dict(sorted(per_principle.items())),
        "chosen_minus_rejected_chars": {
            "mean": _mean([float(d) for d in diffs]),
            "chosen_longer_rate": _mean([float(d > 0) for d in diffs]),
        },
        "reads": {"total": len(reads), "logprobs": methods.get("logprobs", 0),
                  "generated": methods.get("generated", 0), "failed": sum(failed_reads.values()),
                  "failed_generated": failed_reads.get("generated", 0),
                  "failed_logprobs": failed_reads.get("logprobs", 0)},
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def format_summary(stats: dict[str, Any]) -> str:
    """The stats as a few human-readable lines."""
    pr, reads = stats["preferences"], stats["reads"]
    hist = " ".join(f"{b['lo']:.1f}-{b['hi']:.1f}:{b['n']}" for b in stats["confidence_histogram"])
    lines = [
        f"pairs {stats['pairs']}: labelled {stats['labelled']}, failed {stats['failed_pairs']}",
        f"preferences written: {pr['total']} (ai {pr['ai']}, human {pr['human']}); dropped: "
        + ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()),
        f"position consistency (both orders pick the same answer): "
        f"{_pct(stats['position_consistency_rate'])}; reads answering (A): {_pct(stats['option_a_rate'])}",
        f"p_chosen histogram: {hist}",
        f"reads: {reads['total']} ({reads['logprobs']} scored, {reads['generated']} generated letters), "
        f"{reads['failed']} failed",
    ]
    if stats["mean_option_mass"] is not None:
        lines.append(f"mean probability on the two option tokens: {stats['mean_option_mass']:.3f}")
    length = stats["chosen_minus_rejected_chars"]
    if length["mean"] is not None:
        lines.append(f"chosen minus rejected length: {length['mean']:+.1f} chars on average, "
                     f"chosen longer in {_pct(length['chosen_longer_rate'])}")
    if stats["per_principle"]:
        lines.append("per principle (pairs): " + ", ".join(f"{k} {v['pairs']}" for k, v in
                                                           stats["per_principle"].items()))
    if stats.get("signal") is not None:
        sig = stats["signal"]
        lines.append("labels carry signal: yes" if sig["signal"] else
                     f"labels carry signal: no ({'; '.join(sig['reasons'])})")
    return "\n".join(lines)


def labels_in_order(path: Path, ids: Sequence[str]) -> list[LabelRecord]:
    """The labels of ``ids`` from a labels file, in the order of ``ids`` (missing ones left out, each
    once)."""
    from cai.core.jsonl import read_jsonl

    if not Path(path).exists():
        return []
    by_id = {r.id: r for r in read_jsonl(path, LabelRecord)}
    return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]


def build_outputs(
    run_dir: Path,
    label_ids: Sequence[str],
    filters: Filters,
    human: Sequence[PreferenceRecord] = (),
    extra: dict[str, Any] | None = None,
    audit: dict[str, Any] | None = None,
    pools: PoolWeighting | None = None,
) -> dict[str, Any]:
    """Rebuild ``preferences.jsonl`` and ``stats.json`` in ``run_dir`` from ``labels.jsonl``; return the
    stats.

    ``stats["pools"]`` (when a human row has a pool, or ``pools`` weighted them): ``pools`` and ``balance``
    of the weighting, and ``effective``, each pool's rows, total weight, share and mean weight.

    ``audit`` (the dict of :func:`cai.audit.labeler.audit_labels`, when one was run
    for this feedback model) joins the signal verdict, ``stats["signal"]``.
    """
    labels = labels_in_order(run_dir / "labels.jsonl", label_ids)
    kept, dropped = select_preferences(labels, filters)
    write_records_atomic(run_dir / "preferences.jsonl", [*kept, *human])
    stats = label_stats(labels, kept, dropped, len(human))
    stats["filters"] = {"min_confidence": filters.min_confidence,
                        "drop_inconsistent": filters.drop_inconsistent, "keep_ties": filters.keep_ties}
    stats["signal"] = label_signal(stats, audit).to_dict()
    if human and ((pools is not None and pools.active) or any(h.pool for h in human)):
        weighting = pools or PoolWeighting()
        stats["pools"] = {"pools": dict(weighting.pools), "balance": weighting.balance,
                          "effective": effective_weights(human)}
    stats.update(extra or {})
    write_json_atomic(run_dir / "stats.json", stats)
    return stats
