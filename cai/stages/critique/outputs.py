"""Files derived from ``revisions.jsonl``: the SFT set, revision pairs, stats and a printed summary.

``revisions.jsonl`` is the append-only source of truth; :func:`derive_outputs`
rebuilds everything else from it, deterministically and atomically (tmp file +
``os.replace``), at the end of every run:

* ``sft.jsonl``: :class:`~cai.core.records.SFTRecord` rows in TRL's conversational
  prompt/completion format. The prompt is the prompt's own turns (the
  constitution's system prompt is left out, so the tuned model behaves well
  without it); the completion is the revision of round ``sft_round`` (default:
  the last round) or, when that revision is flagged, the latest unflagged
  revision before it. A trace with no unflagged revision at or before that round
  is left out (counted in ``left_out``). A ``helpful`` trace contributes its
  plain answer (round 0) unless the answer is flagged.
* ``pairs_revision.jsonl`` (on request): the SFT revision preferred over the
  initial answer, as :class:`~cai.core.records.PreferenceRecord` with
  ``source="revision"`` and ``p_chosen=1.0``: the shortcut of the Hugging Face
  recipe, not an AI label.
* ``stats.json``: counts, % revised, % of revisions flagged by reason,
  per-principle counts and mean lengths (characters) before and after.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai.core.atomic_files import write_json_atomic, write_records_atomic
from cai.core.jsonl import PathLike, read_records
from cai.core.records import Message, PreferenceRecord, RevisionRecord, SFTRecord, make_id
from cai.stages.critique.cleaning import FLAGS

log = logging.getLogger(__name__)

SFT_FILE, PAIRS_FILE, STATS_FILE, REVISIONS_FILE = "sft.jsonl", "pairs_revision.jsonl", "stats.json", "revisions.jsonl"


def sft_choice(record: RevisionRecord, sft_round: int | None = None) -> tuple[int, str] | None:
    """``(round, text)`` of the completion to train on, or None if the trace has nothing clean.

    >>> from cai.core.records import Provenance, RevisionRound
    >>> def rnd(i, flags): return RevisionRound(index=i, principle_id="p", revision_request="r",
    ...     revision=f"rev{i}", revision_raw=f"rev{i}", revision_finish_reason="stop", flags=flags)
    >>> rec = RevisionRecord(id="x", prompt_id="p", prompt=[Message(role="user", content="q")], answer="a",
    ...     answer_finish_reason="stop", rounds=[rnd(1, []), rnd(2, ["truncated"])], provenance=Provenance())
    >>> sft_choice(rec), sft_choice(rec, 1)
    ((1, 'rev1'), (1, 'rev1'))
    >>> sft_choice(rec.model_copy(update={"rounds": [rnd(1, ["empty"])]})) is None
    True
    >>> sft_choice(rec.model_copy(update={"kind": "helpful", "rounds": []}))
    (0, 'a')
    """
    if record.kind == "helpful":
        return None if record.answer_flags or not record.answer.strip() else (0, record.answer)
    target = len(record.rounds) if sft_round is None else min(sft_round, len(record.rounds))
    for r in reversed(record.rounds[:target]):
        if not r.flags:
            return r.index, r.revision
    return None


def _target(record: RevisionRecord, sft_round: int | None) -> int:
    if record.kind == "helpful":
        return 0
    return len(record.rounds) if sft_round is None else min(sft_round, len(record.rounds))


def _provenance(record: RevisionRecord, round_: int):
    return record.provenance.model_copy(
        update={"principle_ids": [r.principle_id for r in record.rounds[:round_]]}
    )


def sft_record(record: RevisionRecord, choice: tuple[int, str], sft_round: int | None = None) -> SFTRecord:
    """The SFT row for a trace and its chosen ``(round, text)``."""
    round_, text = choice
    return SFTRecord(
        id=make_id("sft", record.id, round_),
        prompt=record.prompt,
        completion=[Message(role="assistant", content=text)],
        source_id=record.id,
        kind=record.kind,
        round=round_,
        provenance=_provenance(record, round_),
        metadata={
            "prompt_id": record.prompt_id,
            "sample_index": record.sample_index,
            "fallback": round_ < _target(record, sft_round),
            "prompt_metadata": record.metadata,
        },
    )


def revision_pair(record: RevisionRecord, choice: tuple[int, str]) -> PreferenceRecord | None:
    """The chosen revision over the initial answer, labelled as the revision shortcut (None if they are equal)."""
    round_, text = choice
    if record.kind != "revision" or round_ == 0 or text == record.answer:
        return None
    return PreferenceRecord(
        id=make_id("revision-pair", record.id, round_),
        prompt=record.prompt,
        chosen=[Message(role="assistant", content=text)],
        rejected=[Message(role="assistant", content=record.answer)],
        p_chosen=1.0,
        source="revision",
        provenance=_provenance(record, round_),
        metadata={
            "label": "revision shortcut: the revision is assumed better than the initial answer (no AI feedback)",
            "revision_id": record.id,
            "round": round_,
            "prompt_id": record.prompt_id,
        },
    )


def _mean(values: Sequence[float]) -> float | None:
    """Mean rounded to one decimal, None for no values.

    >>> _mean([1, 2]), _mean([])
    (1.5, None)
    """
    return round(sum(values) / len(values), 1) if values else None


def _pct(part: int, whole: int) -> float:
    """Percentage rounded to one decimal (0 for an empty whole).

    >>> _pct(1, 3), _pct(0, 0)
    (33.3, 0.0)
    """
    return round(100.0 * part / whole, 1) if whole else 0.0


def compute_stats(records: Sequence[RevisionRecord], sft_round: int | None = None) -> dict[str, Any]:
    """Counts, % revised, flags by reason, per-principle counts and mean lengths (characters)."""
    revs = [r for r in records if r.kind == "revision"]
    helpful = [r for r in records if r.kind == "helpful"]
    choices = {r.id: sft_choice(r, sft_round) for r in records}
    chosen = [r for r in revs if choices[r.id] is not None]
    rounds = [rnd for r in revs for rnd in r.rounds]
    by_flag = Counter(f for rnd in rounds for f in rnd.flags)
    principles: dict[str, dict[str, int]] = {}
    for rnd in rounds:
        entry = principles.setdefault(rnd.principle_id, {"rounds": 0, "flagged": 0})
        entry["rounds"] += 1
        entry["flagged"] += bool(rnd.flags)
    from_round = Counter(choices[r.id][0] for r in chosen)  # type: ignore[index]
    return {
        "records": len(records),
        "revision_records": len(revs),
        "helpful_records": len(helpful),
        "prompts": len({r.prompt_id for r in revs}),
        "rounds": max((len(r.rounds) for r in revs), default=0),
        "sft_round": sft_round if sft_round is not None else "last",
        "sft_rows": len(chosen) + sum(choices[r.id] is not None for r in helpful),
        "sft_revision_rows": len(chosen),
        "sft_helpful_rows": sum(choices[r.id] is not None for r in helpful),
        "sft_from_round": {str(k): from_round[k] for k in sorted(from_round)},
        "sft_fallbacks": sum(choices[r.id][0] < _target(r, sft_round) for r in chosen),  # type: ignore[index]
        "left_out": len(revs) - len(chosen),
        "helpful_left_out": sum(choices[r.id] is None for r in helpful),
        "revised_pct": _pct(len(chosen), len(revs)),
        "revisions": len(rounds),
        "flagged_revisions": sum(bool(rnd.flags) for rnd in rounds),
        "flagged_pct": _pct(sum(bool(rnd.flags) for rnd in rounds), len(rounds)),
        "flags": {f: {"count": by_flag[f], "pct": _pct(by_flag[f], len(rounds))} for f in FLAGS},
        "principles": {k: principles[k] for k in sorted(principles)},
        "mean_chars": {
            "answer": _mean([len(r.answer) for r in revs]),
            "answer_of_revised": _mean([len(r.answer) for r in chosen]),
            "sft_revision": _mean([len(choices[r.id][1]) for r in chosen]),  # type: ignore[index]
            "helpful_answer": _mean([len(r.answer) for r in helpful]),
        },
    }


def format_summary(stats: dict[str, Any]) -> str:
    """A few human-readable lines about a run's stats."""
    mc = stats["mean_chars"]
    flags = ", ".join(f"{f} {v['pct']}%" for f, v in stats["flags"].items() if v["count"]) or "none"
    principles = ", ".join(f"{k} {v['rounds']}" for k, v in stats["principles"].items()) or "none"
    lines = [
        f"traces: {stats['records']} ({stats['revision_records']} revised prompts x samples over "
        f"{stats['prompts']} prompts, {stats['helpful_records']} helpful), rounds: {stats['rounds']}",
        f"revised (clean revision in SFT): {stats['sft_revision_rows']}/{stats['revision_records']} "
        f"({stats['revised_pct']}%); fallbacks to an earlier round: {stats['sft_fallbacks']}; left out: {stats['left_out']}",
        f"revisions flagged: {stats['flagged_revisions']}/{stats['revisions']} ({stats['flagged_pct']}%): {flags}",
        f"principles (rounds): {principles}",
        f"mean chars: answer {mc['answer']}, revised answers before {mc['answer_of_revised']} -> after {mc['sft_revision']}"
        + (f", helpful answer {mc['helpful_answer']}" if stats["helpful_records"] else ""),
        f"sft rows: {stats['sft_rows']} ({stats['sft_revision_rows']} revisions + {stats['sft_helpful_rows']} helpful)"
        + (f"; revision pairs: {stats['pairs']}" if stats.get("pairs") is not None else ""),
    ]
    return "\n".join(lines)


def derive_outputs(
    out_dir: PathLike,
    *,
    sft_round: int | None = None,
    revision_pairs: bool = False,
    ids: set[str] | None = None,
) -> dict[str, Any]:
    """Rebuild ``sft.jsonl``, ``stats.json`` (and ``pairs_revision.jsonl``) from ``revisions.jsonl``.

    ``ids`` restricts the derived files to the traces of the current settings;
    other traces in the file are counted (``other_records``) and left out.
    """
    out = Path(out_dir)
    source = out / REVISIONS_FILE
    records = read_records(source, RevisionRecord) if source.exists() else []
    kept = [r for r in records if ids is None or r.id in ids]
    if len(kept) < len(records):
        log.warning(
            "%s: %d trace(s) come from other settings and are left out of the derived files "
            "(use a fresh --output-dir to keep runs apart)", source, len(records) - len(kept),
        )
    choices = [(r, sft_choice(r, sft_round)) for r in kept]
    n_sft = write_records_atomic(out / SFT_FILE, [sft_record(r, c, sft_round) for r, c in choices if c])
    stats = compute_stats(kept, sft_round)
    stats["other_records"] = len(records) - len(kept)
    stats["pairs"] = None
    if revision_pairs:
        pairs = [p for r, c in choices if c for p in [revision_pair(r, c)] if p is not None]
        stats["pairs"] = write_records_atomic(out / PAIRS_FILE, pairs)
    write_json_atomic(out / STATS_FILE, stats)
    log.info("derived %s (%d rows)%s and %s from %s", out / SFT_FILE, n_sft,
             f", {out / PAIRS_FILE} ({stats['pairs']} pairs)" if revision_pairs else "", out / STATS_FILE, source)
    return stats
