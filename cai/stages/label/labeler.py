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

Pairs come from :mod:`cai.stages.label.pairs`.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from cai.backends.protocol import Backend
from cai.constitution.schema import Constitution, Principle, sample_principles
from cai.core.errors import CaiError
from cai.core.records import (
    Judgement,
    LabelDetail,
    LabelRecord,
    Message,
    PreferenceRecord,
    Provenance,
    SamplingParams,
    make_id,
)
from cai.stages.label.feedback import FEEDBACK_FORMAT_VERSION, Ask, FeedbackReader, Read, combine_reads
from cai.stages.label.pairs import Pair

log = logging.getLogger(__name__)



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


def label_record(
    rid: str, pair_id: str, prompt: Any, answers: tuple[str, str], principle_ids: list[str],
    judgements: list[Judgement], provenance: Provenance, *, cot: bool = False,
    metadata: dict[str, Any] | None = None,
) -> LabelRecord:
    """One pair's record from its reads in both orders (a principle drawn twice weighs twice); failed,
    with the reason, when no principle was read successfully in both orders."""
    combined = combine_reads([Read(j.principle_id, j.order, j.p_option_a) for j in judgements],
                             Counter(principle_ids))
    failed = combined.p_a is None
    return LabelRecord(
        id=rid,
        pair_id=pair_id,
        prompt=prompt,
        answer_a=[Message(role="assistant", content=answers[0])],
        answer_b=[Message(role="assistant", content=answers[1])],
        status="failed" if failed else "ok",
        p_a=combined.p_a,
        p_a_ab=combined.p_a_ab,
        p_a_ba=combined.p_a_ba,
        position_consistent=combined.position_consistent,
        principle_ids=principle_ids,
        used_principle_ids=list(combined.used),
        judgements=judgements,
        cot=cot,
        error="no principle was read successfully in both orders" if failed else None,
        provenance=provenance,
        metadata=metadata or {},
    )


def _label_record(
    pair: Pair, rid: str, principles: list[Principle], judgements: list[Judgement], backend: Backend,
    constitution: Constitution, config: LabelConfig,
) -> LabelRecord:
    ids = [p.id for p in principles]
    cot_params = (SamplingParams(max_new_tokens=config.cot_max_new_tokens, temperature=0.0, seed=config.seed)
                  if config.cot else None)
    provenance = Provenance(constitution=constitution.ref(), principle_ids=ids, model=backend.model,
                            backend=backend.kind, sampling=cot_params, seed=config.seed)
    return label_record(rid, pair.id, pair.prompt, (pair.answer_a, pair.answer_b), ids, judgements,
                        provenance, cot=config.cot, metadata=pair.metadata)


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
        ai_label=detail,
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


