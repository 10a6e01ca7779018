"""Is the revision better than the initial answer? The judge behind ``sft_source: best``.

For every red-team trace whose SFT revision (:func:`cai.stages.critique.outputs.pick_sft`'s
revision candidate) and initial answer both pass the cleaning gates, the feedback
model of the label stage (:class:`cai.stages.label.feedback.FeedbackReader`) is
asked the A/B question of the round's principle, in both orders, with the
revision as the pair's ``answer_a`` and the initial answer as ``answer_b``.
Each judgement is a :class:`~cai.core.records.LabelRecord` (raw reads kept),
appended to ``judgements.jsonl`` in the critique output folder as it is made,
keyed by a deterministic id (:func:`judgement_id`: the trace, the round, both
texts, the principle, the feedback model and its settings), so a rerun resumes
(:func:`cai.core.resume.fill_jsonl`). ``p_a`` of a judgement is p(the revision is
better).

Whether those verdicts are worth anything is measured on the very same reads
(:func:`has_signal`). The judge **has signal** when all of these hold:

* at least :data:`MIN_JUDGED` (10) pairs were judged in both orders;
* position consistency (both orders prefer the same text) above
  :data:`MIN_CONSISTENCY` (0.6): a reader that reacts to position only is
  consistent on 0% of pairs, a coin on about 50%;
* the standard deviation of p(revision better) over the pairs above
  :data:`MIN_SD` (0.02): a judge that says the same number for every pair says
  nothing about any of them.

Without signal ``best`` ignores the verdicts (a clean revision is kept); with
signal a clean revision is kept only when p > 0.5.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.constitution.schema import Constitution
from cai.core.errors import CaiError
from cai.core.records import LabelRecord, Message, Provenance, RevisionRecord, make_id, to_chat
from cai.core.resume import fill_jsonl
from cai.core.stats import NO_SIGNAL_SD, proportion
from cai.stages.critique.cleaning import example_texts
from cai.stages.critique.outputs import REVISIONS_FILE, answer_ok, regate, target_round
from cai.stages.label.feedback import FEEDBACK_FORMAT_VERSION, Ask
from cai.stages.label.labeler import label_record
from cai.stages.label.signal import LabelSignal

JUDGEMENTS_FILE = "judgements.jsonl"
MIN_JUDGED, MIN_CONSISTENCY, MIN_SD = 10, 0.6, NO_SIGNAL_SD


@dataclass(frozen=True)
class Candidate:
    """A trace whose clean revision (of ``round``) is to be compared with its clean initial answer."""

    trace_id: str
    round: int
    principle_id: str
    prompt: list[Message]
    revision: str
    answer: str


def judge_candidates(records: Sequence[RevisionRecord], sft_round: int | None = None) -> list[Candidate]:
    """The traces ``best`` needs a verdict on: a clean SFT revision and a clean, different initial answer.

    ``records`` must be re-gated already (:func:`cai.stages.critique.outputs.regate`).

    >>> from cai.core.records import RevisionRound
    >>> rnd = RevisionRound(index=1, principle_id="p", revision_request="r", revision="rev",
    ...                     revision_raw="rev", revision_finish_reason="stop")
    >>> rec = RevisionRecord(id="x", prompt_id="p", prompt=[Message(role="user", content="q")], answer="ans",
    ...     answer_finish_reason="stop", rounds=[rnd], provenance=Provenance())
    >>> [(c.trace_id, c.round, c.revision, c.answer) for c in judge_candidates([rec])]
    [('x', 1, 'rev', 'ans')]
    >>> judge_candidates([rec.model_copy(update={"answer_flags": ["truncated"]})])
    []
    """
    out = []
    for r in records:
        if r.kind != "revision" or not answer_ok(r):
            continue
        clean = [x for x in r.rounds[: target_round(r, sft_round)] if not x.flags]
        if clean and clean[-1].revision.strip() != r.answer.strip():
            x = clean[-1]
            out.append(Candidate(r.id, x.index, x.principle_id, list(r.prompt), x.revision, r.answer))
    return out


def reader_identity(reader: Any) -> dict[str, Any]:
    """What about a :class:`~cai.stages.label.feedback.FeedbackReader` determines its reads."""
    cot = bool(getattr(reader, "cot", False))
    shots = getattr(reader, "shots", {}) or {}
    ident: dict[str, Any] = {
        "model": reader.backend.model,
        "backend": reader.backend.kind,
        "cot": cot,
        "few_shot": any(bool(v) for v in shots.values()),
        "seed": getattr(reader, "seed", 0),
        "letter_max_new_tokens": getattr(getattr(reader, "letter_params", None), "max_new_tokens", None),
        "format": FEEDBACK_FORMAT_VERSION,
    }
    if cot:
        ident["cot_clamp"] = list(getattr(reader, "cot_clamp", (0.4, 0.6)))
        ident["cot_max_new_tokens"] = getattr(getattr(reader, "cot_params", None), "max_new_tokens", None)
    return ident


def judgement_id(candidate: Candidate, reader_ident: Mapping[str, Any], constitution_hash: str) -> str:
    """Deterministic id of one judgement: the trace, round, both texts, principle, judge and constitution.

    >>> c = Candidate("t", 1, "p", [Message(role="user", content="q")], "rev", "ans")
    >>> judgement_id(c, {"model": "m"}, "h") == judgement_id(c, {"model": "m"}, "h")
    True
    >>> judgement_id(c, {"model": "m"}, "h") == judgement_id(c, {"model": "other"}, "h")
    False
    """
    return make_id("revision-judgement", candidate.trace_id, candidate.round, candidate.principle_id,
                   candidate.revision, candidate.answer, dict(reader_ident), constitution_hash)


def _judgement(jid: str, c: Candidate, judgements: list, ident: Mapping[str, Any],
               constitution: Constitution) -> LabelRecord:
    provenance = Provenance(constitution=constitution.ref(), principle_ids=[c.principle_id],
                            model=ident.get("model"), backend=ident.get("backend"), seed=ident.get("seed"))
    return label_record(jid, make_id("pair", to_chat(c.prompt), c.revision, c.answer), c.prompt,
                        (c.revision, c.answer), [c.principle_id], judgements, provenance,
                        cot=bool(ident.get("cot")),
                        metadata={"trace_id": c.trace_id, "round": c.round, "answer_a": "revision",
                                  "answer_b": "initial answer"})


def judge_revisions(
    records: Sequence[RevisionRecord],
    reader: Any,
    constitution: Constitution,
    path: str | Path,
    *,
    sft_round: int | None = None,
    batch_size: int = 8,
    resume: bool = True,
) -> dict[str, float]:
    """Judge each candidate's revision against its initial answer; ``{trace id: p(revision better)}``.

    ``reader`` is a :class:`~cai.stages.label.feedback.FeedbackReader` (anything
    with ``.backend`` and ``.read(asks)``). Judgements are appended to ``path``
    (``judgements.jsonl`` in the critique output folder) as each batch of
    ``batch_size`` pairs is read; the ones already there are not asked again.
    Traces whose judgement failed are absent from the result.
    """
    examples = example_texts(constitution.examples)
    gated = [regate(r, examples) for r in records if r.kind == "revision"]
    ident = reader_identity(reader)
    wanted = {judgement_id(c, ident, constitution.hash): c for c in judge_candidates(gated, sft_round)}
    principles = {}
    for c in wanted.values():
        try:
            principles[c.principle_id] = constitution.principle(c.principle_id)
        except KeyError:
            raise CaiError(
                f"{path}: principle_id: {c.principle_id!r} (trace {c.trace_id}, round {c.round}) is not a "
                f"principle of constitution {constitution.name!r}",
                hint="judge with the constitution the traces were made with",
            ) from None

    def produce(reader: Any, done: Any, bar: Any) -> Iterator[LabelRecord]:
        todo = [(jid, c) for jid, c in wanted.items() if not done(jid)]
        for start in range(0, len(todo), max(1, batch_size)):
            batch = todo[start : start + max(1, batch_size)]
            asks = [Ask(c.prompt, c.revision, c.answer, [principles[c.principle_id]]) for _, c in batch]
            for (jid, c), js in zip(batch, reader.read(asks)):
                yield _judgement(jid, c, js, ident, constitution)

    fill_jsonl(path, list(wanted), lambda: reader, produce, what="judgement", desc="judge revisions",
               resume=resume)
    recs = {r.id: r for r in read_judgements(path) if r.id in wanted}
    return judged_p({wanted[i].trace_id: r for i, r in recs.items()})


def read_judgements(path: str | Path) -> list[LabelRecord]:
    """Every judgement in a ``judgements.jsonl`` (none when the file does not exist)."""
    from cai.core.jsonl import read_jsonl

    return list(read_jsonl(path, LabelRecord)) if Path(path).exists() else []


def matching_judgements(path: str | Path, records: Sequence[RevisionRecord],
                        sft_round: int | None = None) -> dict[str, LabelRecord]:
    """``{trace id: judgement}`` for the current candidates of re-gated ``records``, matched by content.

    A judgement matches when it names the trace and its texts are the candidate's
    revision and initial answer; when several judges wrote to the same file, the
    last matching line wins.
    """
    want = {c.trace_id: c for c in judge_candidates(records, sft_round)}
    out: dict[str, LabelRecord] = {}
    for r in read_judgements(path):
        c = want.get(str(r.metadata.get("trace_id")))
        if c is not None and r.answer_a[-1].content == c.revision and r.answer_b[-1].content == c.answer:
            out[c.trace_id] = r
    return out


def judged_p(judgements: Mapping[str, LabelRecord]) -> dict[str, float]:
    """p(revision better) of each successful judgement, by trace id."""
    return {tid: r.p_a for tid, r in judgements.items() if r.status == "ok" and r.p_a is not None}


def has_signal(
    judgements: Sequence[LabelRecord],
    *,
    min_judged: int = MIN_JUDGED,
    min_consistency: float = MIN_CONSISTENCY,
    min_sd: float = MIN_SD,
) -> LabelSignal:
    """Whether the judge's verdicts on these pairs carry signal (module doc), with the figures measured.

    Figures: ``judged`` (successful pairs), ``failed``, ``consistency`` (with
    its Wilson interval), ``p_sd``, ``mean_p`` and ``revision_better`` (share with
    p > 0.5, with its interval).

    >>> def j(p_ab, p_ba):
    ...     from cai.core.records import Judgement
    ...     return LabelRecord(id="i", pair_id="p", prompt=[Message(role="user", content="q")],
    ...         answer_a=[Message(role="assistant", content="r")],
    ...         answer_b=[Message(role="assistant", content="a")],
    ...         status="ok", p_a=(p_ab + p_ba) / 2, p_a_ab=p_ab, p_a_ba=p_ba,
    ...         position_consistent=(p_ab - .5) * (p_ba - .5) > 0, principle_ids=["s"], judgements=[],
    ...         provenance=Provenance())
    >>> has_signal([j(0.9, 0.8), j(0.2, 0.1)] * 6).signal
    True
    >>> v = has_signal([j(0.9, 0.2), j(0.8, 0.3)] * 6)   # follows position (A), not content
    >>> v.signal, v.reasons
    (False, ['position consistency 0.0% <= 60%', 'p(revision better) nearly constant (sd 0.0000 <= 0.02)'])
    >>> has_signal([]).reasons[0]
    'only 0 judged pair(s), fewer than 10'
    """
    ok = [r for r in judgements if r.status == "ok" and r.p_a is not None]
    n = len(ok)
    ps = [float(r.p_a) for r in ok]  # type: ignore[arg-type]
    consistent = sum(bool(r.position_consistent) for r in ok)
    cons = proportion(consistent, n)
    sd = statistics.pstdev(ps) if ps else None
    better = proportion(sum(p > 0.5 for p in ps), n)
    reasons = []
    if n < min_judged:
        reasons.append(f"only {n} judged pair(s), fewer than {min_judged}")
    if n and cons["rate"] <= min_consistency:
        reasons.append(f"position consistency {100 * cons['rate']:.1f}% <= {100 * min_consistency:g}%")
    if sd is not None and sd <= min_sd:
        reasons.append(f"p(revision better) nearly constant (sd {sd:.4f} <= {min_sd:g})")
    figures = {
        "judged": n,
        "failed": len(judgements) - n,
        "consistency": cons["rate"],
        "consistency_interval": [cons["lo"], cons["hi"]],
        "p_sd": None if sd is None else round(sd, 6),
        "mean_p": round(sum(ps) / n, 6) if n else None,
        "revision_better": better["rate"],
        "revision_better_interval": [better["lo"], better["hi"]],
        "thresholds": {"min_judged": min_judged, "min_consistency": min_consistency, "min_sd": min_sd},
    }
    return LabelSignal(not reasons, reasons, figures)


def judge_best(out_dir: str | Path, ids: set[str] | None, reader: Any, constitution: Constitution,
               sft_round: int | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """The ``best`` source's inputs: ``({trace id: p(revision better)}, verdict)`` for the traces of ``ids``.

    Judges what ``judgements.jsonl`` in ``out_dir`` lacks (``reader`` builds its backend only then), then
    measures the signal of the judgements that match today's candidates (:func:`has_signal`).
    """
    from cai.core.jsonl import read_records

    out = Path(out_dir)
    records = [r for r in read_records(out / REVISIONS_FILE, RevisionRecord) if ids is None or r.id in ids]
    judge_revisions(records, reader, constitution, out / JUDGEMENTS_FILE, sft_round=sft_round)
    reads = matching_judgements(out / JUDGEMENTS_FILE, [regate(r, example_texts(constitution.examples))
                                                        for r in records], sft_round)
    verdict = has_signal(list(reads.values()))
    return judged_p(reads), {**verdict.to_dict(), "signal": verdict.signal}
