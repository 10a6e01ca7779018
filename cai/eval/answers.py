"""The evaluation's prompt sets, and each model's answers to them (greedy, resumable).

Sets: ``redteam`` (harm), ``lookalike`` (XSTest format: ``label`` safe/unsafe, for
over-refusal) and ``benign`` (helpfulness). A model answers the prompts of all its
sets, a chunk of prompts per generate call; each chunk's answers are appended to
``answers/<model>.jsonl`` as soon as it is done, as :class:`~cai.core.records.CompletionRecord`
lines keyed by the same deterministic ids as ``cai generate``, so a rerun skips what is there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cai.backends.protocol import Backend
from cai.core.errors import CaiError
from cai.core.records import CompletionRecord, ConstitutionRef, PromptRecord, SamplingParams

log = logging.getLogger(__name__)

SETS = ("redteam", "lookalike", "benign")
LOOKALIKE_LABELS = ("safe", "unsafe")
GENERATE_CHUNK = 64  # prompts per generate call (answers are saved after each): one hf batch


def limit_lookalike(records: Sequence[PromptRecord], limit: int | None) -> list[PromptRecord]:
    """The first ``limit`` safe and the first ``limit`` unsafe prompts, in file order.

    >>> labels = ["safe", "safe", "unsafe", "unsafe", "safe", "unsafe"]
    >>> rs = [PromptRecord(prompt=f"q{i}", label=lab) for i, lab in enumerate(labels)]
    >>> [r.prompt for r in limit_lookalike(rs, 1)]
    ['q0', 'q2']
    >>> len(limit_lookalike(rs, None))
    6
    """
    if limit is None:
        return list(records)
    seen = {label: 0 for label in LOOKALIKE_LABELS}
    out = []
    for r in records:
        label = r.metadata.get("label")
        if seen[label] < limit:
            seen[label] += 1
            out.append(r)
    return out


def check_labels(path: Path, records: Sequence[PromptRecord]) -> None:
    """Every look-alike prompt needs ``label`` safe or unsafe."""
    for n, r in enumerate(records, start=1):
        if r.metadata.get("label") not in LOOKALIKE_LABELS:
            raise CaiError(
                f"{path}: prompt {n}: label: expected 'safe' or 'unsafe', got {r.metadata.get('label')!r}",
                hint='write {"prompt": ..., "label": "safe"|"unsafe"} lines (the XSTest format)',
            )


def load_sets(paths: dict[str, Path | None], limit: int | None) -> dict[str, list[PromptRecord]]:
    """The prompt sets that have a file, each cut to ``limit`` (look-alikes: per label)."""
    from cai.core.jsonl import read_prompts

    sets: dict[str, list[PromptRecord]] = {}
    for name in SETS:
        path = paths.get(name)
        if path is None:
            continue
        records = read_prompts(path)
        if name == "lookalike":
            check_labels(path, records)
            sets[name] = limit_lookalike(records, limit)
        else:
            sets[name] = records[: limit or None]
    return sets


def unique_prompts(sets: dict[str, list[PromptRecord]]) -> list[PromptRecord]:
    """All prompts of all sets, each distinct prompt once (first occurrence wins).

    >>> a, b = PromptRecord(prompt="x"), PromptRecord(prompt="y")
    >>> [p.prompt for p in unique_prompts({"redteam": [a, b], "benign": [PromptRecord(prompt="x")]})]
    ['x', 'y']
    """
    seen: dict[str, PromptRecord] = {}
    for records in sets.values():
        for r in records:
            seen.setdefault(r.key(), r)
    return list(seen.values())


def prompt_chars(p: PromptRecord) -> int:
    """Characters of a prompt's messages: the sort key that puts prompts of similar length in one batch.

    >>> prompt_chars(PromptRecord(prompt="four"))
    4
    """
    return sum(len(m.content) for m in p.messages())


def answer_prompts(
    prompts: Sequence[PromptRecord],
    path: Path,
    model: str,
    kind: str,
    backend: Callable[[], Backend],
    params: SamplingParams,
    *,
    system_prompt: str | None = None,
    constitution: ConstitutionRef | None = None,
    chunk: int = GENERATE_CHUNK,
    desc: str | None = None,
) -> dict[str, CompletionRecord]:
    """Each prompt's answer (prompt key -> record), generating only the missing ones.

    Answers are appended to ``path`` as they are made, ``chunk`` prompts per generate
    call (shortest first, so each call pads little), through the project's resume loop
    (:func:`cai.core.resume.fill_jsonl`, with a progress bar): a run killed midway
    keeps every finished chunk, and a rerun answers only the rest. ``backend()`` is
    called only when something is missing, so a finished model is never loaded again.
    """
    from cai.core.jsonl import read_records
    from cai.core.resume import fill_jsonl
    from cai.stages.generate import completion_id, generate_completions

    ids = {p.key(): completion_id(p.key(), model, kind, params, system_prompt, 0) for p in prompts}
    ordered = sorted({p.key(): p for p in prompts}.values(), key=prompt_chars)
    path.parent.mkdir(parents=True, exist_ok=True)

    def produce(be: Backend, done: Callable[[str], bool], bar: Any) -> Iterator[CompletionRecord]:
        todo = [p for p in ordered if not done(ids[p.key()])]
        log.info("%s: answering %d prompt(s) (%d already in %s)", model, len(todo),
                 len(ids) - len(todo), path)
        return generate_completions(todo, be, params, system_prompt=system_prompt, constitution=constitution,
                                    done=done, batch_size=chunk)

    fill_jsonl(path, set(ids.values()), backend, produce, what="answer", desc=desc or f"answers {model}")
    wanted = {v: k for k, v in ids.items()}
    return {wanted[r.id]: r for r in read_records(path, CompletionRecord) if r.id in wanted}


def answer_text(record: CompletionRecord) -> str:
    """The answer's text."""
    return record.completion[0].content
