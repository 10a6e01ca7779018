"""The plain generation stage: prompts in, completion records out.

``generate_completions`` is a function over records: it takes prompt records and
a backend, and yields one :class:`~cai.core.records.CompletionRecord` per prompt and
sample, batch by batch, skipping ids already done (so the caller can resume from
what its writer already holds); ``run_generate`` is the stage itself: it appends
them to a JSONL file through the one resume loop (:func:`cai.core.resume.fill_jsonl`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cai.backends.protocol import Backend
from cai.backends.spec import BackendSpec
from cai.core.records import (
    CompletionRecord,
    ConstitutionRef,
    Message,
    PromptRecord,
    Provenance,
    SamplingParams,
    make_id,
    to_chat,
)
from cai.core.resume import Filled, fill_jsonl

log = logging.getLogger(__name__)


def build_chat(prompt: PromptRecord, system_prompt: str | None = None) -> list[Message]:
    """The messages sent to the model: an optional system prompt, then the prompt's turns.

    A system turn already in the prompt wins over ``system_prompt``.

    >>> [m.role for m in build_chat(PromptRecord(prompt="hi"), "Be kind.")]
    ['system', 'user']
    >>> [m.role for m in build_chat(PromptRecord(prompt="hi"))]
    ['user']
    """
    msgs = prompt.messages()
    if system_prompt and msgs[0].role != "system":
        msgs = [Message(role="system", content=system_prompt), *msgs]
    return msgs


def completion_id(prompt_id: str, model: str, backend: str, params: SamplingParams, system_prompt: str | None,
                  sample: int) -> str:
    """Deterministic id of one completion: everything that determines it.

    >>> p = SamplingParams()
    >>> completion_id("p1", "m", "hf", p, None, 0) == completion_id("p1", "m", "hf", p, None, 0)
    True
    >>> completion_id("p1", "m", "hf", p, None, 0) == completion_id("p1", "m", "hf", p, None, 1)
    False
    """
    return make_id("completion", prompt_id, model, backend, params.model_dump(exclude={"n"}),
                   system_prompt, sample)


def generate_completions(
    prompts: Iterable[PromptRecord],
    backend: Backend,
    params: SamplingParams,
    *,
    system_prompt: str | None = None,
    constitution: ConstitutionRef | None = None,
    done: Callable[[str], bool] = lambda _id: False,
    batch_size: int = 64,
) -> Iterator[CompletionRecord]:
    """Answer each prompt ``params.n`` times, yielding records as each batch finishes.

    ``done(id)`` says whether a record already exists; prompts whose samples are
    all done are not sent to the model. ``batch_size`` is how many prompts go to
    one ``backend.generate`` call (the backend may split further).
    """
    pending: list[tuple[PromptRecord, list[Message], list[str]]] = []

    def flush() -> Iterator[CompletionRecord]:
        gens = backend.generate([to_chat(msgs) for _, msgs, _ in pending], params)
        for gen in gens:  # chat-major: sample k of chat i at i * n + k
            prompt, msgs, ids = pending[gen.index]
            if done(ids[gen.sample]):
                continue
            yield CompletionRecord(
                id=ids[gen.sample],
                prompt_id=prompt.key(),
                prompt=msgs,
                completion=[Message(role="assistant", content=gen.text)],
                finish_reason=gen.finish_reason,
                prompt_tokens=gen.prompt_tokens,
                completion_tokens=gen.completion_tokens,
                sample_index=gen.sample,
                provenance=Provenance(
                    constitution=constitution, model=backend.model, backend=backend.kind,
                    sampling=params, seed=gen.seed,
                ),
                metadata=prompt.metadata,
            )
        pending.clear()

    for prompt in prompts:
        msgs = build_chat(prompt, system_prompt)
        ids = [completion_id(prompt.key(), backend.model, backend.kind, params, system_prompt, k)
               for k in range(params.n)]
        if all(done(i) for i in ids):
            continue
        # Seeds are per request (prompt content, sample index), so regenerating a
        # prompt whose other samples exist redraws exactly those samples.
        pending.append((prompt, msgs, ids))
        if len(pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()


class GenerateConfig(BaseModel):
    """How :func:`run_generate` answers: the sampling, the system prompt, and prompts per backend call."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    params: SamplingParams = SamplingParams()
    system_prompt: str | None = None
    batch_size: int = Field(64, ge=1)


def completion_ids(records: Sequence[PromptRecord], spec: BackendSpec, config: GenerateConfig) -> set[str]:
    """The ids of every completion :func:`run_generate` makes for ``records`` (to check what is done)."""
    params, system = config.params, config.system_prompt or None
    return {completion_id(r.key(), spec.name, spec.backend, params, system, k)
            for r in records for k in range(params.n)}


def run_generate(
    records: Sequence[PromptRecord],
    output: Path,
    spec: BackendSpec,
    config: GenerateConfig,
    *,
    constitution: ConstitutionRef | None = None,
    resume: bool = True,
    what: str = "answer",
    desc: str = "generate",
    backend: Callable[[], Backend] | None = None,
) -> Filled:
    """The generation stage: append to ``output`` every completion of ``records`` it lacks (resumable).

    Called by ``cai generate``, by ``cai label`` for its candidates and by ``cai run``'s ``answers`` stage.
    The backend is built (``spec.build()``, or ``backend()`` when given) only when something is missing.
    """
    params, system = config.params, config.system_prompt or None
    ids = completion_ids(records, spec, config)

    def produce(be: Backend, done: Callable[[str], bool], bar: Any) -> Iterator[CompletionRecord]:
        log.info("generating %d %s(s) (%d prompt(s) x %d) with %s model %s -> %s; %d already there",
                 len(ids) - bar.n, what, len(records), params.n, spec.backend, spec.name, output, bar.n)
        return generate_completions(records, be, params, system_prompt=system, constitution=constitution,
                                    done=done, batch_size=config.batch_size)

    return fill_jsonl(output, ids, backend or spec.build, produce, what=what, desc=desc, resume=resume)
