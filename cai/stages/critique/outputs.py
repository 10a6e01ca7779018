"""Files derived from ``revisions.jsonl``: the SFT set, revision pairs, stats and a printed summary.

``revisions.jsonl`` is the append-only source of truth; :func:`derive_outputs`
rebuilds everything else from it, deterministically and atomically (tmp file +
``os.replace``), at the end of every run:

* ``sft.jsonl``: :class:`~cai.core.records.SFTRecord` rows in TRL's conversational
  prompt/completion format. The prompt is the prompt's own turns (the
  constitution's system prompt is left out, so the tuned model behaves well
  without it); the completion of a red-team trace depends on ``sft_source``:

  - ``revision`` (default): the revision of round ``sft_round`` (default: the
    last round) or, when that revision is flagged, the latest unflagged revision
    before it; a trace with no unflagged revision at or before that round is left
    out (counted in ``left_out``, with the flags that ruled its revisions out);
  - ``initial``: context distillation. The initial answer, made under the
    constitution's system prompt (and its examples with ``answer_few_shot``),
    trained on without it, so the behaviour the prompt elicits moves into the
    weights. Nothing is generated again; a flagged answer is left out;
  - ``best``: the revision above where it is clean and, when the judge of
    :mod:`cai.stages.critique.best` has signal, judged better than the initial
    answer; otherwise the initial answer (if it is clean). When the judge has no
    signal its verdicts are ignored (a clean revision is kept); when the answer
    is flagged a clean revision is kept whatever the judge says.

  A ``helpful`` trace contributes its plain answer (round 0) unless the answer
  is flagged.

* ``pairs_revision.jsonl`` (on request): the SFT revision preferred over the
  initial answer, as :class:`~cai.core.records.PreferenceRecord` with
  ``source="revision"`` and ``p_chosen=1.0``: the shortcut of the Hugging Face
  recipe, not an AI label.
* ``stats.json``: counts, % revised, % of revisions flagged by reason,
  per-principle counts and mean lengths (characters) before and after; how
  many SFT rows survived, where they come from (``sft_from``), why
  (``sft_why``) and why the others were left out (``left_out_why``); with
  ``best``, the judge's signal verdict (``judge``).

Before choosing, every trace is re-checked by today's rules of
:mod:`cai.stages.critique.cleaning` (:func:`regate`), so a run made before a
rule existed gets it too; flags stored at generation time are kept as well.
Rules that need the constitution's few-shot examples run when ``constitution``
is given.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cai.core.atomic_files import write_json_atomic, write_records_atomic
from cai.core.errors import CaiError
from cai.core.jsonl import PathLike, read_records
from cai.core.records import Message, PreferenceRecord, RevisionRecord, SFTRecord, make_id
from cai.stages.critique.cleaning import (
    FLAGS,
    answer_flags,
    clean_revision,
    example_texts,
    prompt_text,
    trim_to_sentence,
)

if TYPE_CHECKING:
    from cai.constitution.schema import Constitution

log = logging.getLogger(__name__)

SFT_FILE, PAIRS_FILE, STATS_FILE, REVISIONS_FILE = ("sft.jsonl", "pairs_revision.jsonl", "stats.json",
                                                    "revisions.jsonl")

SFTSource = Literal["revision", "initial", "best"]
SFT_SOURCES: tuple[SFTSource, ...] = ("revision", "initial", "best")


def _merge(flags: Sequence[str], stored: Sequence[str]) -> list[str]:
    """Both lists of flags, known ones in :data:`FLAGS` order, unknown stored ones after.

    >>> _merge(["repetition"], ["truncated", "old-rule"])
    ['truncated', 'repetition', 'old-rule']
    """
    both = set(flags) | set(stored)
    return [f for f in FLAGS if f in both] + [f for f in dict.fromkeys(stored) if f not in FLAGS]


def regate(record: RevisionRecord, examples: Sequence[str] | None = None,
           trim_truncated: bool = False) -> RevisionRecord:
    """The record with today's cleaning rules applied to its stored raw texts; stored flags are kept too.

    ``examples`` (:func:`~cai.stages.critique.cleaning.example_texts` of the
    constitution) switch on the few-shot copy rules; without them only the flags
    stored at generation time say whether a text copies an example. With
    ``trim_truncated`` an answer cut at ``max_new_tokens`` is trimmed to its last
    complete sentence (:func:`~cai.stages.critique.cleaning.trim_to_sentence`)
    instead of being flagged ``truncated``, when enough is left (the raw text stays
    in ``revisions.jsonl``).

    >>> from cai.core.records import Provenance, RevisionRound
    >>> loop = "This is not a compliment. " * 6
    >>> rec = RevisionRecord(id="x", prompt_id="p", prompt=[Message(role="user", content="q")], answer="a",
    ...     answer_finish_reason="stop", provenance=Provenance(), rounds=[RevisionRound(index=1,
    ...     principle_id="p", revision_request="r", revision=loop, revision_raw=loop,
    ...     revision_finish_reason="stop", flags=["old-rule"])])
    >>> regate(rec).rounds[0].flags
    ['repetition', 'old-rule']
    """
    prompt = prompt_text(record.prompt)
    previous, rounds = record.answer, []
    for rnd in record.rounds:
        _, flags = clean_revision(
            rnd.revision_raw, rnd.revision_finish_reason, previous,
            [rnd.critique_request, rnd.revision_request],
            prompt=prompt, answer=record.answer, critique=rnd.critique, examples=examples or (),
        )
        rounds.append(rnd.model_copy(update={"flags": _merge(flags, rnd.flags)}))
        previous = rnd.revision
    shown = examples if record.answer_few_shot and examples else ()
    text, finish, stored = record.answer, record.answer_finish_reason, record.answer_flags
    trimmed = trim_to_sentence(text) if trim_truncated and finish == "length" else None
    if trimmed is not None:
        text, finish, stored = trimmed, "stop", [f for f in stored if f != "truncated"]
    answer = _merge(answer_flags(text, finish, examples=shown, context=[prompt]), stored)
    return record.model_copy(update={"rounds": rounds, "answer_flags": answer, "answer": text,
                                     "answer_finish_reason": finish})


@dataclass(frozen=True)
class SFTPick:
    """What a trace puts in ``sft.jsonl``: ``round`` (0: its answer), the text, where it comes from and
    why."""

    round: int
    text: str
    source: Literal["revision", "initial", "helpful"]
    why: str


def answer_ok(record: RevisionRecord) -> bool:
    return not record.answer_flags and bool(record.answer.strip())


def pick_sft(
    record: RevisionRecord,
    sft_source: SFTSource = "revision",
    sft_round: int | None = None,
    judged: Mapping[str, float] | None = None,
    judge_signal: bool = False,
    refusal_gate: bool = False,
) -> tuple[SFTPick | None, list[str]]:
    """:func:`choose_sft`, then with ``refusal_gate`` the refusal detector's check of the choice.

    The gate keeps a red-team target only when it declines and a helpful one only when it does
    not (:func:`cai.scoring.refusal.detect_refusal`, audited against human labels by ``cai audit
    refusal``): context distillation then trains on the refusals the model wrote for harmful
    requests and on real answers to benign ones, never on harmful compliance.

    >>> from cai.core.records import Provenance
    >>> rec = RevisionRecord(id="x", prompt_id="p", prompt=[Message(role="user", content="q")],
    ...     answer="Sure, here is how.", answer_finish_reason="stop", provenance=Provenance())
    >>> pick_sft(rec, "initial", refusal_gate=True)
    (None, ['answer: complies with a red-team prompt'])
    >>> pick_sft(rec.model_copy(update={"answer": "I'm sorry, but I can't help with that."}), "initial",
    ...          refusal_gate=True)[0].why
    'initial answer'
    """
    pick, reasons = choose_sft(record, sft_source, sft_round, judged, judge_signal)
    if pick is None or not refusal_gate:
        return pick, reasons
    from cai.scoring.refusal import detect_refusal

    refused = detect_refusal(pick.text).refused
    if record.kind == "helpful" and refused:
        return None, [f"{pick.source}: refuses a helpful prompt"]
    if record.kind != "helpful" and not refused:
        where = "answer" if pick.source == "initial" else pick.source
        return None, [f"{where}: complies with a red-team prompt"]
    return pick, reasons


def choose_sft(
    record: RevisionRecord,
    sft_source: SFTSource = "revision",
    sft_round: int | None = None,
    judged: Mapping[str, float] | None = None,
    judge_signal: bool = False,
) -> tuple[SFTPick | None, list[str]]:
    """The SFT target of a (re-gated) trace under ``sft_source``, or None with the reasons it is left out.

    ``judged`` maps trace ids to p(the revision is better than the initial answer)
    (:func:`cai.stages.critique.best.judge_revisions`); it is used by ``best`` only
    when ``judge_signal``. Reasons of a left-out trace are ``revision: <flag>``
    (each flag of the revisions considered) and ``answer: <flag>``.

    >>> from cai.core.records import Provenance, RevisionRound
    >>> rnd = RevisionRound(index=1, principle_id="p", revision_request="r", revision="rev",
    ...                     revision_raw="rev", revision_finish_reason="stop")
    >>> rec = RevisionRecord(id="x", prompt_id="p", prompt=[Message(role="user", content="q")], answer="ans",
    ...     answer_finish_reason="stop", rounds=[rnd], provenance=Provenance())
    >>> choose_sft(rec)[0]
    SFTPick(round=1, text='rev', source='revision', why='clean revision')
    >>> choose_sft(rec, "initial")[0].text
    'ans'
    >>> choose_sft(rec, "best", judged={"x": 0.3}, judge_signal=True)[0].why
    'judged not better'
    >>> choose_sft(rec, "best", judged={"x": 0.3}, judge_signal=False)[0].why
    'clean revision, judge has no signal'
    >>> choose_sft(rec.model_copy(update={"answer_flags": ["truncated"]}), "initial")
    (None, ['answer: truncated'])
    """
    if sft_source not in SFT_SOURCES:
        raise CaiError(f"sft_source {sft_source!r} is not one of {', '.join(SFT_SOURCES)}",
                       hint="use --sft-source revision, initial or best")
    if record.kind == "helpful":
        if answer_ok(record):
            return SFTPick(0, record.answer, "helpful", "helpful answer"), []
        return None, [f"answer: {f}" for f in record.answer_flags or ["empty"]]
    target = target_round(record, sft_round)
    considered = record.rounds[:target]
    rev = next(((r.index, r.revision) for r in reversed(considered) if not r.flags), None)
    rev_reasons = [f"revision: {f}" for f in dict.fromkeys(f for r in considered for f in r.flags)]
    if not considered:
        rev_reasons = ["revision: no round"]
    ans_reasons = [f"answer: {f}"
                   for f in record.answer_flags or ([] if record.answer.strip() else ["empty"])]
    initial = SFTPick(0, record.answer, "initial", "") if answer_ok(record) else None

    def revision(why: str) -> SFTPick:
        assert rev is not None
        return SFTPick(rev[0], rev[1], "revision", why if rev[0] == target else f"{why} (earlier round)")

    if sft_source == "revision":
        return (revision("clean revision"), []) if rev else (None, rev_reasons)
    if sft_source == "initial":
        return ((SFTPick(0, record.answer, "initial", "initial answer"), []) if initial
                else (None, ans_reasons))
    if rev is None:
        if initial is None:
            return None, rev_reasons + ans_reasons
        return SFTPick(0, record.answer, "initial", "revision flagged"), []
    if initial is None:
        return revision("answer flagged"), []
    if not judge_signal:
        return revision("clean revision, judge has no signal"), []
    p = (judged or {}).get(record.id)
    if p is None:
        return SFTPick(0, record.answer, "initial", "not judged"), []
    if p > 0.5:
        return revision("judged better"), []
    return SFTPick(0, record.answer, "initial", "judged not better"), []


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


def target_round(record: RevisionRecord, sft_round: int | None) -> int:
    if record.kind == "helpful":
        return 0
    return len(record.rounds) if sft_round is None else min(sft_round, len(record.rounds))


def _provenance(record: RevisionRecord, round_: int):
    return record.provenance.model_copy(
        update={"principle_ids": [r.principle_id for r in record.rounds[:round_]]}
    )


def sft_record(record: RevisionRecord, choice: tuple[int, str], sft_round: int | None = None,
               pick: SFTPick | None = None) -> SFTRecord:
    """The SFT row for a trace and its chosen ``(round, text)``.

    With a ``pick`` of a non-default source (an initial answer, or a ``best``
    choice), the row's metadata also says ``sft_source`` and ``why``.
    """
    round_, text = choice
    metadata: dict[str, Any] = {
        "prompt_id": record.prompt_id,
        "sample_index": record.sample_index,
        "fallback": (pick is None or pick.source != "initial") and round_ < target_round(record, sft_round),
        "prompt_metadata": record.metadata,
    }
    if pick is not None:
        metadata["sft_source"], metadata["why"] = pick.source, pick.why
    return SFTRecord(
        id=make_id("sft", record.id, round_),
        prompt=record.prompt,
        completion=[Message(role="assistant", content=text)],
        source_id=record.id,
        kind=record.kind,
        round=round_,
        provenance=_provenance(record, round_),
        metadata=metadata,
    )


def revision_pair(record: RevisionRecord, choice: tuple[int, str]) -> PreferenceRecord | None:
    """The chosen revision over the initial answer, labelled as the revision shortcut (None if they are
    equal)."""
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
            "label": "revision shortcut: the revision is assumed better than the initial answer "
            "(no AI feedback)",
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


def compute_stats(
    records: Sequence[RevisionRecord],
    sft_round: int | None = None,
    *,
    sft_source: SFTSource = "revision",
    judged: Mapping[str, float] | None = None,
    judge_signal: bool = False,
    refusal_gate: bool = False,
) -> dict[str, Any]:
    """Counts, % revised, flags by reason, per-principle counts, mean lengths (characters), and the SFT
    choice.

    ``sft_rows`` = ``sft_revision_rows`` (completions that are revisions) +
    ``sft_initial_rows`` (initial answers of red-team traces) + ``sft_helpful_rows``;
    ``sft_from`` repeats the first two; ``sft_why`` counts why each red-team row
    has its source and ``left_out_why`` why the other traces have none (each reason
    of :func:`pick_sft` once per trace); ``answer_flags`` counts the flags of the
    red-team traces' initial answers.
    """
    revs = [r for r in records if r.kind == "revision"]
    helpful = [r for r in records if r.kind == "helpful"]
    picks = {r.id: pick_sft(r, sft_source, sft_round, judged, judge_signal, refusal_gate) for r in records}
    chosen = [r for r in revs if picks[r.id][0] is not None]
    as_revision = [r for r in chosen if picks[r.id][0].source == "revision"]  # type: ignore[union-attr]
    as_initial = [r for r in chosen if picks[r.id][0].source == "initial"]  # type: ignore[union-attr]
    rounds = [rnd for r in revs for rnd in r.rounds]
    by_flag = Counter(f for rnd in rounds for f in rnd.flags)
    principles: dict[str, dict[str, int]] = {}
    for rnd in rounds:
        entry = principles.setdefault(rnd.principle_id, {"rounds": 0, "flagged": 0})
        entry["rounds"] += 1
        entry["flagged"] += bool(rnd.flags)
    from_round = Counter(picks[r.id][0].round for r in chosen)  # type: ignore[union-attr]
    why = Counter(picks[r.id][0].why for r in chosen)  # type: ignore[union-attr]
    left_why = Counter(reason for r in revs if picks[r.id][0] is None for reason in picks[r.id][1])
    helpful_why = Counter(reason for r in helpful if picks[r.id][0] is None for reason in picks[r.id][1])
    answer_flag_counts = Counter(f for r in revs for f in r.answer_flags)
    return {
        "records": len(records),
        "revision_records": len(revs),
        "helpful_records": len(helpful),
        "prompts": len({r.prompt_id for r in revs}),
        "rounds": max((len(r.rounds) for r in revs), default=0),
        "sft_round": sft_round if sft_round is not None else "last",
        "sft_source": sft_source,
        "sft_rows": len(chosen) + sum(picks[r.id][0] is not None for r in helpful),
        "sft_revision_rows": len(as_revision),
        "sft_initial_rows": len(as_initial),
        "sft_helpful_rows": sum(picks[r.id][0] is not None for r in helpful),
        "sft_from": {"revision": len(as_revision), "initial": len(as_initial)},
        "sft_why": dict(sorted(why.items())),
        "sft_from_round": {str(k): from_round[k] for k in sorted(from_round)},
        "sft_fallbacks": sum(picks[r.id][0].round < target_round(r, sft_round) for r in as_revision),  # type: ignore[union-attr]
        "left_out": len(revs) - len(chosen),
        "left_out_why": dict(sorted(left_why.items())),
        "helpful_left_out": sum(picks[r.id][0] is None for r in helpful),
        "helpful_left_out_why": dict(sorted(helpful_why.items())),
        "revised_pct": _pct(len(as_revision), len(revs)),
        "revisions": len(rounds),
        "flagged_revisions": sum(bool(rnd.flags) for rnd in rounds),
        "flagged_pct": _pct(sum(bool(rnd.flags) for rnd in rounds), len(rounds)),
        "flags": {f: {"count": by_flag[f], "pct": _pct(by_flag[f], len(rounds))} for f in FLAGS},
        "flagged_answers": sum(bool(r.answer_flags) for r in revs),
        "answer_flags": {f: answer_flag_counts[f] for f in sorted(answer_flag_counts)},
        "principles": {k: principles[k] for k in sorted(principles)},
        "mean_chars": {
            "answer": _mean([len(r.answer) for r in revs]),
            "answer_of_revised": _mean([len(r.answer) for r in as_revision]),
            "sft_revision": _mean([len(picks[r.id][0].text) for r in as_revision]),  # type: ignore[union-attr]
            "sft_initial": _mean([len(r.answer) for r in as_initial]),
            "helpful_answer": _mean([len(r.answer) for r in helpful]),
        },
    }


def _counts(d: Mapping[str, int]) -> str:
    """``"a 2, b 1"`` (most frequent first), or ``"none"``.

    >>> _counts({"b": 1, "a": 2}), _counts({})
    ('a 2, b 1', 'none')
    """
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def format_summary(stats: dict[str, Any]) -> str:
    """A few human-readable lines about a run's stats."""
    mc = stats["mean_chars"]
    flags = ", ".join(f"{f} {v['pct']}%" for f, v in stats["flags"].items() if v["count"]) or "none"
    principles = ", ".join(f"{k} {v['rounds']}" for k, v in stats["principles"].items()) or "none"
    lines = [
        f"traces: {stats['records']} ({stats['revision_records']} revised prompts x samples over "
        f"{stats['prompts']} prompts, {stats['helpful_records']} helpful), rounds: {stats['rounds']}",
        f"revised (clean revision in SFT): {stats['sft_revision_rows']}/{stats['revision_records']} "
        f"({stats['revised_pct']}%); fallbacks to an earlier round: {stats['sft_fallbacks']}; left out: "
        f"{stats['left_out']}",
        f"revisions flagged: {stats['flagged_revisions']}/{stats['revisions']} "
        f"({stats['flagged_pct']}%): {flags}",
        f"principles (rounds): {principles}",
        f"mean chars: answer {mc['answer']}, revised answers before {mc['answer_of_revised']} -> after "
        f"{mc['sft_revision']}"
        + (f", helpful answer {mc['helpful_answer']}" if stats["helpful_records"] else ""),
        f"sft rows: {stats['sft_rows']} ({stats['sft_revision_rows']} revisions + "
        f"{stats.get('sft_initial_rows', 0)} initial answers + {stats['sft_helpful_rows']} helpful)"
        + (f"; revision pairs: {stats['pairs']}" if stats.get("pairs") is not None else ""),
    ]
    if "sft_why" in stats:
        lines.append(f"sft source {stats['sft_source']}: {_counts(stats['sft_why'])}")
        lines.append(f"left out {stats['left_out']} red-team trace(s): {_counts(stats['left_out_why'])}"
                     + (f"; helpful left out {stats['helpful_left_out']}: "
                        f"{_counts(stats['helpful_left_out_why'])}"
                        if stats["helpful_left_out"] else ""))
    judge = stats.get("judge")
    if judge is not None:
        f = judge["figures"]
        verdict = "yes" if judge["signal"] else f"no ({'; '.join(judge['reasons'])})"
        lines.append(f"judge (revision vs initial answer): signal {verdict}; {f.get('judged', 0)} "
                     f"judged pair(s)"
                     + (f", position consistency {100 * f['consistency']:.1f}%"
                        if f.get("consistency") is not None else ""))
    return "\n".join(lines)


def derive_outputs(
    out_dir: PathLike,
    *,
    sft_round: int | None = None,
    revision_pairs: bool = False,
    ids: set[str] | None = None,
    sft_source: SFTSource = "revision",
    judged: Mapping[str, float] | None = None,
    judge_signal: bool = False,
    judge: dict[str, Any] | None = None,
    constitution: Constitution | None = None,
    refusal_gate: bool = False,
    trim_truncated: bool = False,
) -> dict[str, Any]:
    """Rebuild ``sft.jsonl``, ``stats.json`` (and ``pairs_revision.jsonl``) from ``revisions.jsonl``.

    ``ids`` restricts the derived files to the traces of the current settings;
    other traces in the file are counted (``other_records``) and left out.
    ``constitution`` switches on the few-shot copy rules of :func:`regate`.
    ``sft_source`` picks the SFT targets (module doc). With ``best``, ``judged``
    (trace id -> p(revision better)) and ``judge_signal`` come from
    :func:`cai.stages.critique.best.judge_best`, and ``judge`` (its verdict and
    figures) goes into the stats.
    """
    out = Path(out_dir)
    if sft_source not in SFT_SOURCES:
        raise CaiError(f"sft_source {sft_source!r} is not one of {', '.join(SFT_SOURCES)}",
                       hint="use --sft-source revision, initial or best")
    source = out / REVISIONS_FILE
    records = read_records(source, RevisionRecord) if source.exists() else []
    kept = [r for r in records if ids is None or r.id in ids]
    if len(kept) < len(records):
        log.warning(
            "%s: %d trace(s) come from other settings and are left out of the derived files "
            "(use a fresh --output-dir to keep runs apart)", source, len(records) - len(kept),
        )
    examples = example_texts(constitution.examples) if constitution is not None else None
    gated = [regate(r, examples, trim_truncated) for r in kept]
    picks = [(r, pick_sft(r, sft_source, sft_round, judged, bool(judge_signal), refusal_gate)[0])
             for r in gated]
    rows = [sft_record(r, (p.round, p.text), sft_round, p if sft_source != "revision" else None)
            for r, p in picks if p is not None]
    n_sft = write_records_atomic(out / SFT_FILE, rows)
    stats = compute_stats(gated, sft_round, sft_source=sft_source, judged=judged,
                          judge_signal=bool(judge_signal), refusal_gate=refusal_gate)
    stats["refusal_gate"] = refusal_gate
    stats["trimmed_answers"] = sum(g.answer != r.answer for g, r in zip(gated, kept))
    stats["other_records"] = len(records) - len(kept)
    stats["judge"] = judge
    stats["pairs"] = None
    if revision_pairs:
        pairs = [x for r, p in picks if p is not None for x in [revision_pair(r, (p.round, p.text))]
                 if x is not None]
        stats["pairs"] = write_records_atomic(out / PAIRS_FILE, pairs)
    write_json_atomic(out / STATS_FILE, stats)
    log.info("derived %s (%d rows)%s and %s from %s", out / SFT_FILE, n_sft,
             f", {out / PAIRS_FILE} ({stats['pairs']} pairs)" if revision_pairs else "",
             out / STATS_FILE, source)
    return stats


def initial_answers(revisions: PathLike, out: PathLike, helpful: bool = True) -> int:
    """The traces' initial answers as completion records (prompt without the system prompt), into ``out``.

    What ``answers.source: critique`` pairs for the labeller: the critique stage's own samples (several per
    prompt with ``samples_per_prompt``), so nothing is generated twice. Returns how many were written.
    """
    from cai.core.records import CompletionRecord

    traces = [r for r in read_records(revisions, RevisionRecord)
              if r.answer.strip() and (helpful or r.kind == "revision")]
    rows = [CompletionRecord(
        id=make_id("critique-answer", r.id), prompt_id=r.prompt_id, prompt=r.prompt,
        completion=[Message(role="assistant", content=r.answer)], finish_reason=r.answer_finish_reason,
        completion_tokens=r.answer_tokens, sample_index=r.sample_index,
        provenance=r.provenance.model_copy(update={"principle_ids": []}),
        metadata={**r.metadata, "trace_id": r.id, "system_prompt": r.system_prompt}) for r in traces]
    return write_records_atomic(out, rows)
