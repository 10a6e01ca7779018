"""The SL-CAI critique/revision stage: answer, critique by a principle, revise, repeat.

:func:`critique_revise` is a function over records: prompt records in,
:class:`~cai.core.records.RevisionRecord` traces out, one per prompt x sample, yielded
as each batch finishes. For every prompt the policy writes an answer (with the
constitution's system prompt), then for ``rounds`` rounds a principle is drawn
(weighted, re-drawn each round), the model critiques the latest text by that
principle's critique request and revises it by its revision request. The chat
layout is documented in :mod:`cai.stages.critique.prompts`; cleaning rules in
:mod:`cai.stages.critique.cleaning`; the derived SFT set and stats in
:mod:`cai.stages.critique.outputs`.

Batching: the prompts of a batch advance together, one ``backend.generate`` call
per step (answers, round-1 critiques, round-1 revisions, round-2 critiques...).

Reproducibility: principles are drawn from a ``random.Random`` seeded from
``(seed, prompt id, sample index)``, and the backend seeds every request from its
content (:func:`~cai.backends.request_seed`), so a record does not depend on the
batch it shared; drawing ``k`` rounds gives the first ``k`` draws of a longer run.

Helpful mixing: ``helpful`` prompts get a plain answer and no rounds (``kind ==
"helpful"``); :func:`select_helpful` picks them from a pool deterministically.

Answer few-shot: with ``answer_few_shot`` the initial answers of red-team prompts
(not the helpful ones) are made after the constitution's examples shown as good
answers (:func:`~cai.stages.critique.prompts.answer_example_turns`), so that the
answer under the constitution can itself be a distillation target
(``sft_source`` ``initial`` or ``best`` in :mod:`cai.stages.critique.outputs`).

Each revision is checked by every rule of :mod:`cai.stages.critique.cleaning`
as it is made, with the prompt, the initial answer, the round's critique and the
constitution's example texts; the flags are stored in the round.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cai.backends.protocol import Backend, Generation
from cai.constitution.schema import Constitution, Principle, sample_principles
from cai.core.records import (
    Message,
    PromptRecord,
    Provenance,
    RevisionKind,
    RevisionRecord,
    RevisionRound,
    SamplingParams,
    make_id,
    to_chat,
)
from cai.stages.critique.cleaning import answer_flags, clean_revision, example_texts, prompt_text
from cai.stages.critique.prompts import (
    answer_chat,
    answer_example_turns,
    critique_chat,
    example_turns,
    revision_chat,
    round_turns,
    split_system,
)

DEFAULT_PARAMS = SamplingParams(max_new_tokens=256, temperature=0.7, top_p=0.95)


class CritiqueConfig(BaseModel):
    """Settings of the stage. ``params.n`` must be 1: use ``samples_per_prompt``.

    ``batch_size`` is how many prompts advance through the rounds together (each
    with its ``samples_per_prompt`` samples); ``few_shot`` shows the
    constitution's examples before critiques and revisions; ``answer_few_shot``
    shows them (prompt -> revision) before the initial answer of red-team prompts.

    >>> CritiqueConfig().rounds, CritiqueConfig(rounds=4, no_critique=True).no_critique
    (2, True)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    rounds: int = Field(2, ge=0, le=32)  # 0: initial answers only (context distillation)
    samples_per_prompt: int = Field(1, ge=1, le=64)
    helpful_samples: int | None = Field(None, ge=1, le=64)  # samples of a helpful prompt (default: the same)
    no_critique: bool = False
    few_shot: bool = True
    answer_few_shot: bool = False
    params: SamplingParams = DEFAULT_PARAMS
    batch_size: int = Field(16, ge=1)

    def samples_for(self, kind: RevisionKind) -> int:
        """Samples per prompt of a trace kind.

        >>> c = CritiqueConfig(samples_per_prompt=3, helpful_samples=1)
        >>> c.samples_for("revision"), c.samples_for("helpful")
        (3, 1)
        >>> CritiqueConfig(samples_per_prompt=2).samples_for("helpful")
        2
        """
        if kind == "helpful":
            return self.helpful_samples or self.samples_per_prompt
        return self.samples_per_prompt

    @field_validator("params")
    @classmethod
    def _one_sample(cls, v: SamplingParams) -> SamplingParams:
        if v.n != 1:
            raise ValueError("sampling n must be 1: set samples_per_prompt instead")
        return v


def record_id(
    kind: RevisionKind, prompt_id: str, sample: int, model: str, backend: str, config: CritiqueConfig,
    constitution_hash: str
) -> str:
    """Deterministic id of one trace: everything that determines it (batch size excluded).

    >>> c = CritiqueConfig()
    >>> (record_id("revision", "p", 0, "m", "hf", c, "h")
    ...  == record_id("revision", "p", 0, "m", "hf", c.model_copy(update={"batch_size": 1}), "h"))
    True
    >>> record_id("revision", "p", 0, "m", "hf", c, "h") == record_id("revision", "p", 1, "m", "hf", c, "h")
    False

    ``answer_few_shot`` enters the id only when it is on, so older ids stay valid:

    >>> shots = c.model_copy(update={"answer_few_shot": True})
    >>> (record_id("revision", "p", 0, "m", "hf", c, "h")
    ...  == record_id("revision", "p", 0, "m", "hf", shots, "h"))
    False
    >>> record_id("helpful", "p", 0, "m", "hf", c, "h") == record_id("helpful", "p", 0, "m", "hf", shots, "h")
    True
    """
    params = config.params.model_dump(exclude={"n"})
    if kind == "helpful":  # a plain answer: rounds and critique settings do not matter
        return make_id("helpful", prompt_id, sample, model, backend, params, constitution_hash)
    settings: dict[str, object] = {"rounds": config.rounds, "no_critique": config.no_critique,
                                   "few_shot": config.few_shot}
    if config.answer_few_shot:
        settings["answer_few_shot"] = True
    return make_id("revision", prompt_id, sample, model, backend, params, settings, constitution_hash)


def principle_rng(seed: int, prompt_id: str, sample: int) -> random.Random:
    """The random source of one trace's principle draws.

    >>> principle_rng(0, "p", 0).random() == principle_rng(0, "p", 0).random()
    True
    >>> principle_rng(0, "p", 0).random() == principle_rng(0, "p", 1).random()
    False
    """
    return random.Random(int(make_id("principles", seed, prompt_id, sample), 16))


def select_helpful(pool: Sequence[PromptRecord], k: int, seed: int = 0) -> list[PromptRecord]:
    """``k`` prompts from ``pool``, chosen by a hash of (seed, prompt id): stable as the pool grows.

    >>> pool = [PromptRecord(prompt=f"task {i}") for i in range(10)]
    >>> a = select_helpful(pool, 3)
    >>> len(a), a == select_helpful(pool[::-1], 3), select_helpful(pool, 0)
    (3, True, [])
    >>> len(select_helpful(pool, 50))
    10
    """
    ranked = sorted(pool, key=lambda p: make_id("helpful-pick", seed, p.key()))
    return ranked[: max(0, k)]


@dataclass
class _Trace:
    """One prompt x sample in flight."""

    rid: str
    kind: RevisionKind
    prompt: PromptRecord
    sample: int
    system: str | None
    turns: list[Message]
    principles: list[Principle]
    conversation: list[Message] = field(default_factory=list)
    answer: Generation | None = None
    latest: str = ""
    rounds: list[RevisionRound] = field(default_factory=list)
    pending_critique: Generation | None = None


def critique_revise(
    prompts: Iterable[PromptRecord],
    constitution: Constitution,
    backend: Backend,
    config: CritiqueConfig | None = None,
    *,
    helpful: Iterable[PromptRecord] = (),
    done: Callable[[str], bool] = lambda _id: False,
    on_step: Callable[[str, int], None] | None = None,
) -> Iterator[RevisionRecord]:
    """Critique and revise each prompt's answer; yield one trace per prompt x sample as batches finish.

    ``helpful`` prompts get a plain answer (``kind="helpful"``, no rounds) and
    come after ``prompts``. ``done(id)`` says a trace already exists (resume):
    it is not recomputed. ``on_step(name, n_chats)`` is called before each
    backend call (for progress display).
    """
    config = config or CritiqueConfig()
    _few_shot(constitution, constitution.principles[0], config)  # a bad example fails before any model call
    if config.answer_few_shot:
        answer_example_turns(constitution)
    items = [(p, "revision") for p in prompts] + [(p, "helpful") for p in helpful]
    batch: list[list[_Trace]] = []
    queued: set[str] = set()  # a prompt listed twice has one id: compute it once
    for prompt, kind in items:
        group = [t for t in _new_traces(prompt, kind, constitution, backend, config, done)
                 if t.rid not in queued]
        if not group:
            continue
        queued.update(t.rid for t in group)
        batch.append(group)
        if len(batch) >= config.batch_size:
            yield from _run_batch(batch, constitution, backend, config, on_step)
            batch = []
    if batch:
        yield from _run_batch(batch, constitution, backend, config, on_step)


def _new_traces(
    prompt: PromptRecord, kind: RevisionKind, constitution: Constitution, backend: Backend,
    config: CritiqueConfig, done: Callable[[str], bool],
) -> list[_Trace]:
    """The not-yet-done samples of one prompt, with their principle draws."""
    pid = prompt.key()
    system, turns = split_system(prompt.messages(), constitution.system_prompt)
    out = []
    for k in range(config.samples_for(kind)):
        rid = record_id(kind, pid, k, backend.model, backend.kind, config, constitution.hash)
        if done(rid):
            continue
        rounds = config.rounds if kind == "revision" else 0
        principles = sample_principles(constitution, principle_rng(config.params.seed, pid, k), rounds)
        out.append(_Trace(rid, kind, prompt, k, system, turns, principles))
    return out


def _generate(backend: Backend, chats: list[list[Message]], params: SamplingParams, name: str,
              on_step: Callable[[str, int], None] | None) -> list[Generation]:
    if on_step is not None:
        on_step(name, len(chats))
    gens = backend.generate([to_chat(c) for c in chats], params)
    if len(gens) != len(chats) * params.n:
        raise RuntimeError(f"backend returned {len(gens)} generations for {len(chats)} chats x {params.n}")
    return gens


def _run_batch(
    groups: list[list[_Trace]], constitution: Constitution, backend: Backend, config: CritiqueConfig,
    on_step: Callable[[str, int], None] | None,
) -> Iterator[RevisionRecord]:
    params = config.params
    # Step 0: one chat per prompt, n samples each; sample k goes to trace k (resumed samples are dropped).
    answer_shots = answer_example_turns(constitution) if config.answer_few_shot else []
    chats = [answer_chat(g[0].system, g[0].turns, answer_shots if g[0].kind == "revision" else None)
             for g in groups]
    by_n: dict[int, list[int]] = {}  # one call per number of samples (one call when both kinds agree)
    for i, g in enumerate(groups):
        by_n.setdefault(config.samples_for(g[0].kind), []).append(i)
    for k, which in by_n.items():
        n = params.model_copy(update={"n": k})
        for gen in _generate(backend, [chats[i] for i in which], n, "answers", on_step):
            for t in groups[which[gen.index]]:
                if t.sample == gen.sample:
                    t.answer, t.latest = gen, gen.text
                    t.conversation = [*t.turns, Message(role="assistant", content=gen.text)]
    traces = [t for g in groups for t in g]
    revising = [t for t in traces if t.kind == "revision"]
    examples = example_texts(constitution.examples)
    for r in range(1, config.rounds + 1):
        if not revising:
            break
        shots = {t.principles[r - 1].id: _few_shot(constitution, t.principles[r - 1], config)
                 for t in revising}
        if not config.no_critique:
            chats = [critique_chat(t.system, shots[t.principles[r - 1].id], t.conversation,
                                   t.principles[r - 1])
                     for t in revising]
            for gen in _generate(backend, chats, params, f"round {r} critiques", on_step):
                revising[gen.index].pending_critique = gen
        chats = [
            revision_chat(t.system, shots[t.principles[r - 1].id], t.conversation, t.principles[r - 1],
                          t.pending_critique.text if t.pending_critique else None)
            for t in revising
        ]
        for gen in _generate(backend, chats, params, f"round {r} revisions", on_step):
            _add_round(revising[gen.index], r, gen, examples)
    for t in traces:
        yield _record(t, constitution, backend, config)


def _few_shot(constitution: Constitution, principle: Principle, config: CritiqueConfig) -> list[Message]:
    if not config.few_shot:
        return []
    return example_turns(constitution, principle, critique=not config.no_critique)


def _add_round(t: _Trace, r: int, gen: Generation, examples: list[str]) -> None:
    """Clean a revision, record the round, and grow the conversation with it."""
    p = t.principles[r - 1]
    crit = t.pending_critique
    assert t.answer is not None, "every trace gets an answer in step 0"
    text, flags = clean_revision(
        gen.text, gen.finish_reason, t.latest, [p.critique if crit else None, p.revision],
        prompt=prompt_text(t.turns), answer=t.answer.text, critique=crit.text if crit else None,
        examples=examples,
    )
    t.rounds.append(
        RevisionRound(
            index=r,
            principle_id=p.id,
            critique_request=p.critique if crit else None,
            critique=crit.text if crit else None,
            critique_finish_reason=crit.finish_reason if crit else None,
            critique_tokens=crit.completion_tokens if crit else None,
            revision_request=p.revision,
            revision=text,
            revision_raw=gen.text,
            revision_finish_reason=gen.finish_reason,
            revision_tokens=gen.completion_tokens,
            flags=flags,
        )
    )
    t.conversation = [*t.conversation, *round_turns(p, crit.text if crit else None, text)]
    t.latest, t.pending_critique = text, None


def _record(t: _Trace, constitution: Constitution, backend: Backend,
            config: CritiqueConfig) -> RevisionRecord:
    assert t.answer is not None, "every trace gets an answer in step 0"
    own_system = bool(t.prompt.messages()) and t.prompt.messages()[0].role == "system"
    return RevisionRecord(
        id=t.rid,
        kind=t.kind,
        prompt_id=t.prompt.key(),
        sample_index=t.sample,
        prompt=t.prompt.messages(),
        system_prompt=None if own_system else t.system,
        answer=t.answer.text,
        answer_finish_reason=t.answer.finish_reason,
        answer_tokens=t.answer.completion_tokens,
        answer_flags=answer_flags(t.answer.text, t.answer.finish_reason, context=[prompt_text(t.turns)],
                                  examples=example_texts(constitution.examples)
                                  if config.answer_few_shot and t.kind == "revision" else ()),
        rounds=t.rounds,
        no_critique=config.no_critique,
        few_shot=len(constitution.examples) if config.few_shot and t.kind == "revision" else 0,
        answer_few_shot=len(constitution.examples) if config.answer_few_shot and t.kind == "revision" else 0,
        provenance=Provenance(
            constitution=constitution.ref(),
            principle_ids=[r.principle_id for r in t.rounds],
            model=backend.model,
            backend=backend.kind,
            sampling=config.params,
            seed=config.params.seed,
        ),
        metadata=t.prompt.metadata,
    )
