"""The RLAIF labelling stage: answer pairs in, AI-feedback labels out.

``label_records`` is a function over records. For each :class:`Pair` it draws
``principles_per_pair`` principles (seeded by the run's seed and the pair's id),
asks the feedback backend the multiple-choice question of :mod:`cai.stages.label.feedback`
in both answer orders for each, and yields one :class:`~cai.core.records.LabelRecord`
per pair (failures too: they keep the raw text and never become a preference).
``label_pairs`` yields the :class:`~cai.core.records.PreferenceRecord` of each
successful label (:func:`to_preference`).

How a read is made, in this order of preference:

1. ``backend.score`` of the options ``A``/``B`` after ``The better response is (``
   (with ``cot``: after the generated reasoning), softmaxed to p(A);
2. when the backend raises :class:`~cai.backends.ScoringUnsupported` (a server
   without logprobs), the model writes a letter that
   :func:`cai.stages.label.feedback.parse_choice` reads strictly (p(A) = 1 or 0). The
   switch is made once per run and logged.

Pairs come from sampled candidates (:func:`pairs_from_completions`, all pairs
``i < j`` of a prompt's distinct answers, or disjoint pairs ``(0,1), (2,3)...``),
from a preference file (:func:`pairs_from_preferences`: ``chosen`` is shown
first, as ``answer_a``), or from a responses file in either shape
(:func:`read_pairs_file`).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cai.backends.protocol import Backend
from cai.constitution.schema import Constitution, Principle, sample_principles
from cai.core.errors import CaiError
from cai.core.jsonl import PathLike, read_records
from cai.core.records import (
    Judgement,
    LabelDetail,
    LabelRecord,
    Message,
    PreferenceRecord,
    Provenance,
    SamplingParams,
    make_id,
    to_chat,
)
from cai.stages.label.feedback import FEEDBACK_FORMAT_VERSION, Ask, FeedbackReader, Read, combine_reads

log = logging.getLogger(__name__)

Pairing = Literal["all", "disjoint"]


# ----------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Pair:
    """Two different answers to one prompt, in a given order (``answer_a`` first)."""

    id: str
    prompt: list[Message]
    answer_a: str
    answer_b: str
    metadata: dict[str, Any] = field(default_factory=dict)


def make_pair(prompt: Sequence[Message], answer_a: str, answer_b: str, metadata: dict | None = None) -> Pair:
    """A pair with its deterministic id (prompt and both answers, in order).

    >>> p = make_pair([Message(role="user", content="q")], "x", "y")
    >>> p.id == make_pair([Message(role="user", content="q")], "x", "y").id, len(p.id)
    (True, 16)
    """
    if answer_a == answer_b:
        raise ValueError("a pair needs two different answers")
    pid = make_id("pair", to_chat(list(prompt)), answer_a, answer_b)
    return Pair(pid, list(prompt), answer_a, answer_b, dict(metadata or {}))


def pair_indices(k: int, pairing: Pairing = "all") -> list[tuple[int, int]]:
    """Which candidates are paired: ``all`` pairs ``i < j``, or ``disjoint`` ``(0,1), (2,3)...``.

    >>> pair_indices(3), pair_indices(4, "disjoint"), pair_indices(1)
    ([(0, 1), (0, 2), (1, 2)], [(0, 1), (2, 3)], [])
    """
    if pairing == "disjoint":
        return [(i, i + 1) for i in range(0, k - 1, 2)]
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def distinct_answers(answers: Sequence[str]) -> list[int]:
    """Indices of the first occurrence of each answer (whitespace-trimmed), in order.

    >>> distinct_answers(["a", "b", " a ", "c"])
    [0, 1, 3]
    """
    seen: set[str] = set()
    keep = []
    for i, a in enumerate(answers):
        if a.strip() not in seen:
            seen.add(a.strip())
            keep.append(i)
    return keep


@dataclass
class PairingReport:
    """How candidates became pairs."""

    prompts: int = 0
    answers: int = 0
    duplicate_answers: int = 0
    prompts_without_pair: int = 0
    pairs: int = 0


def pairs_from_completions(records: Iterable[Any], pairing: Pairing = "all") -> tuple[list[Pair], PairingReport]:
    """Pairs from answer records (``prompt`` + one-message ``completion``), grouped by prompt.

    Records of one prompt are ordered by ``sample_index`` when they have one (else
    file order); identical answers are dropped; a prompt with fewer than two
    distinct answers gives no pair (counted in the report).
    """
    groups: dict[str, list[Any]] = {}
    for r in records:
        groups.setdefault(make_id(to_chat(r.prompt)), []).append(r)
    report = PairingReport(prompts=len(groups))
    pairs: list[Pair] = []
    for recs in groups.values():
        recs = sorted(recs, key=lambda r: getattr(r, "sample_index", 0))
        texts = [r.completion[0].content for r in recs]
        keep = distinct_answers(texts)
        report.answers += len(texts)
        report.duplicate_answers += len(texts) - len(keep)
        idx = pair_indices(len(keep), pairing)
        if not idx:
            report.prompts_without_pair += 1
        for i, j in idx:
            ri, rj = recs[keep[i]], recs[keep[j]]
            meta = {"answer_ids": [ri.id, rj.id]}
            if getattr(ri, "prompt_id", None):
                meta["prompt_id"] = ri.prompt_id
            pairs.append(make_pair(ri.prompt, texts[keep[i]], texts[keep[j]], meta))
    report.pairs = len(pairs)
    return pairs, report


def pairs_from_preferences(records: Iterable[PreferenceRecord]) -> list[Pair]:
    """Pairs from preference records: ``chosen`` becomes ``answer_a`` (shown first in order ``ab``)."""
    out = []
    for r in records:
        meta = {"source_id": r.id, "source": r.source}
        out.append(make_pair(r.prompt, r.chosen[-1].content, r.rejected[-1].content, meta))
    return out


def read_pairs_file(path: PathLike, pairing: Pairing = "all") -> tuple[list[Pair], PairingReport]:
    """Pairs from a responses file, by the shape of its first record.

    * pair shape, ``{"prompt", "chosen", "rejected", ...}`` (PreferenceRecord,
      e.g. a human pair file): each line is a pair, ``chosen`` shown first;
    * answer shape, ``{"prompt", "completion", "id"?, ...}`` (a
      CompletionRecord, or any prompt/completion JSONL): answers are grouped by
      prompt and paired like sampled candidates.
    """
    import json

    from cai.stages.export import SFTRow

    p = Path(path)
    if not p.is_file():
        raise CaiError(f"{p}: no such file", hint="give a JSONL file of pairs or answers")
    first: dict[str, Any] | None = None
    with p.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    first = json.loads(line)
                except ValueError:
                    first = None
                if not isinstance(first, dict):
                    raise CaiError(f"{p}:{n}: expected a JSON object", hint="write one {...} object a line")
                break
    if first is None:
        raise CaiError(f"{p}: no records", hint="write one pair or answer a line")
    if "chosen" in first or "rejected" in first:
        pairs = pairs_from_preferences(read_records(p, PreferenceRecord))
        return pairs, PairingReport(prompts=len({make_id(to_chat(x.prompt)) for x in pairs}), answers=2 * len(pairs),
                                    pairs=len(pairs))
    if "completion" in first:
        return pairs_from_completions(read_records(p, SFTRow), pairing)
    raise CaiError(
        f"{p}:1: neither a pair (prompt/chosen/rejected) nor an answer (prompt/completion)",
        hint="see `cai label --help` for the two --responses formats",
    )


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class LabelConfig:
    """How pairs are labelled. Everything but ``batch_size`` goes into each label's id."""

    principles_per_pair: int = 1
    seed: int = 0
    cot: bool = False
    cot_clamp: tuple[float, float] = (0.4, 0.6)
    cot_max_new_tokens: int = 256
    few_shot: bool = True
    letter_max_new_tokens: int = 12
    batch_size: int = 8  # pairs per backend call

    def __post_init__(self) -> None:
        if self.principles_per_pair < 1:
            raise CaiError(f"--principles-per-pair must be >= 1, got {self.principles_per_pair}")
        low, high = self.cot_clamp
        if not 0.0 <= low <= 0.5 <= high <= 1.0:
            raise CaiError(f"--cot-clamp {low} {high}: need 0 <= low <= 0.5 <= high <= 1",
                           hint="e.g. --cot-clamp 0.4 0.6 (the paper's), or 0 1 for none")
        if self.batch_size < 1:
            raise CaiError(f"batch size must be >= 1, got {self.batch_size}")

    def identity(self) -> dict[str, Any]:
        """What determines a label (the prompt format version included)."""
        d = asdict(self)
        d.pop("batch_size")
        if not self.cot:
            d.pop("cot_clamp")
            d.pop("cot_max_new_tokens")
        d["format"] = FEEDBACK_FORMAT_VERSION
        return d


def label_id(pair_id: str, backend: Backend, constitution: Constitution, config: LabelConfig) -> str:
    """Deterministic id of a label: the pair, the feedback model, the constitution and the config."""
    return make_id("label", pair_id, backend.model, backend.kind, constitution.hash, config.identity())


def label_id_for(pair_id: str, model: str, kind: str, constitution: Constitution, config: LabelConfig) -> str:
    """:func:`label_id` without a backend object (to check what is done before loading a model)."""
    return make_id("label", pair_id, model, kind, constitution.hash, config.identity())


def pair_principles(constitution: Constitution, pair_id: str, config: LabelConfig) -> list[Principle]:
    """The principles a pair is judged on: a seeded draw from ``(seed, pair id)``.

    >>> from cai.constitution.schema import Principle
    >>> c = Constitution(name="t", version="1", principles=[Principle(id=i, critique="c", revision="r")
    ...                                                      for i in "abcdef"])
    >>> cfg = LabelConfig(principles_per_pair=3, seed=1)
    >>> [p.id for p in pair_principles(c, "x", cfg)] == [p.id for p in pair_principles(c, "x", cfg)]
    True
    """
    rng = random.Random(int(make_id("principles", config.seed, pair_id), 16))
    return sample_principles(constitution, rng, config.principles_per_pair)


# ----------------------------------------------------------------------------- the stage


def _label_record(
    pair: Pair, rid: str, principles: list[Principle], judgements: list[Judgement], backend: Backend,
    constitution: Constitution, config: LabelConfig,
) -> LabelRecord:
    counts = Counter(p.id for p in principles)
    combined = combine_reads([Read(j.principle_id, j.order, j.p_option_a) for j in judgements], counts)
    failed = combined.p_a is None
    cot_params = (SamplingParams(max_new_tokens=config.cot_max_new_tokens, temperature=0.0, seed=config.seed)
                  if config.cot else None)
    return LabelRecord(
        id=rid,
        pair_id=pair.id,
        prompt=pair.prompt,
        answer_a=[Message(role="assistant", content=pair.answer_a)],
        answer_b=[Message(role="assistant", content=pair.answer_b)],
        status="failed" if failed else "ok",
        p_a=combined.p_a,
        p_a_ab=combined.p_a_ab,
        p_a_ba=combined.p_a_ba,
        position_consistent=combined.position_consistent,
        principle_ids=[p.id for p in principles],
        used_principle_ids=list(combined.used),
        judgements=judgements,
        cot=config.cot,
        error="no principle was read successfully in both orders" if failed else None,
        provenance=Provenance(
            constitution=constitution.ref(), principle_ids=[p.id for p in principles], model=backend.model,
            backend=backend.kind, sampling=cot_params, seed=config.seed,
        ),
        metadata=pair.metadata,
    )


def label_records(
    pairs: Iterable[Pair],
    backend: Backend,
    constitution: Constitution,
    config: LabelConfig | None = None,
    *,
    done: Callable[[str], bool] = lambda _id: False,
) -> Iterator[LabelRecord]:
    """Label each pair not ``done``, yielding one :class:`LabelRecord` per pair as each batch finishes.

    Failed labels are yielded too (``status == "failed"``, raw text kept), so the
    caller's append-only file holds everything the model said.
    """
    config = config or LabelConfig()
    reader = FeedbackReader(
        backend, constitution, cot=config.cot, cot_clamp=config.cot_clamp,
        cot_max_new_tokens=config.cot_max_new_tokens, few_shot=config.few_shot,
        letter_max_new_tokens=config.letter_max_new_tokens, seed=config.seed,
    )
    batch: list[tuple[Pair, str]] = []

    def flush() -> Iterator[LabelRecord]:
        principles = [pair_principles(constitution, p.id, config) for p, _ in batch]
        asks = [Ask(p.prompt, p.answer_a, p.answer_b, prs) for (p, _), prs in zip(batch, principles)]
        for (pair, rid), prs, js in zip(batch, principles, reader.read(asks)):
            yield _label_record(pair, rid, prs, js, backend, constitution, config)
        batch.clear()

    seen: set[str] = set()
    for pair in pairs:
        rid = label_id(pair.id, backend, constitution, config)
        if done(rid) or rid in seen:  # a pair listed twice is labelled once
            continue
        seen.add(rid)
        batch.append((pair, rid))
        if len(batch) >= config.batch_size:
            yield from flush()
    if batch:
        yield from flush()


def to_preference(record: LabelRecord, weight: float = 1.0) -> PreferenceRecord | None:
    """The preference a successful label makes (``None`` for a failed one).

    ``chosen`` is the answer with the higher averaged probability (``answer_a``
    on an exact tie), ``p_chosen >= 0.5`` its probability.
    """
    if record.status != "ok" or record.p_a is None or record.p_a_ab is None or record.p_a_ba is None:
        return None
    a_wins = record.p_a >= 0.5
    chosen, rejected = (record.answer_a, record.answer_b) if a_wins else (record.answer_b, record.answer_a)
    p = record.p_a if a_wins else 1.0 - record.p_a
    # answer_a is shown as (A) in order "ab"; answer_b is shown as (A) in order "ba".
    as_a, as_b = (record.p_a_ab, record.p_a_ba) if a_wins else (1.0 - record.p_a_ba, 1.0 - record.p_a_ab)
    methods = {j.method for j in record.judgements if j.principle_id in record.used_principle_ids}
    detail = LabelDetail(
        label_id=record.id,
        feedback_model=record.provenance.model or "",
        feedback_backend=record.provenance.backend or "",
        method=methods.pop() if len(methods) == 1 else "mixed",
        principle_ids=record.principle_ids,
        margin=round(max(0.0, 2 * p - 1), 12),
        p_chosen_as_a=as_a,
        p_chosen_as_b=as_b,
        position_consistent=bool(record.position_consistent),
        cot=record.cot,
        reasoning=[j.reasoning for j in record.judgements if j.reasoning],
    )
    return PreferenceRecord(
        id=record.id, prompt=record.prompt, chosen=chosen, rejected=rejected, p_chosen=p, source="ai",
        weight=weight, provenance=record.provenance, metadata={**record.metadata, "pair_id": record.pair_id},
        label=detail,
    )


def label_pairs(
    pairs: Iterable[Pair],
    backend: Backend,
    constitution: Constitution,
    config: LabelConfig | None = None,
    *,
    done: Callable[[str], bool] = lambda _id: False,
) -> Iterator[PreferenceRecord]:
    """Soft, order-debiased AI preferences for pairs; failed labels are counted and logged, not yielded.

    Use :func:`label_records` to keep the failures (what ``cai label`` writes to ``labels.jsonl``).
    """
    failed = total = 0
    for rec in label_records(pairs, backend, constitution, config, done=done):
        total += 1
        pref = to_preference(rec)
        if pref is None:
            failed += 1
            continue
        yield pref
    if failed:
        log.warning("%d of %d pair(s) got no label (every read failed): see label_records for their raw text",
                    failed, total)


def load_pairs_for_audit(path: Path, limit: int | None) -> list[Pair]:
    """Human pairs for the audit: ``answer_a`` is the human-chosen answer."""
    pairs = pairs_from_preferences(read_records(path, PreferenceRecord))
    if not pairs:
        raise CaiError(f"{path}: no pairs", hint="write one {prompt, chosen, rejected} object a line")
    return pairs[: limit or None]
