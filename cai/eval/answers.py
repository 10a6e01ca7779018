"""The evaluation's prompt sets, and each model's answers to them (greedy, resumable).

Sets: ``redteam`` (harm), ``lookalike`` (XSTest format: ``label`` safe/unsafe, for
over-refusal) and ``benign`` (helpfulness). A model answers the prompts of all its
sets in one batched generate call; answers go to ``answers/<model>.jsonl`` as
:class:`~cai.core.records.CompletionRecord` lines keyed by the same deterministic ids
as ``cai generate``, so a rerun skips what is there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from cai.backends.protocol import Backend
from cai.core.errors import CaiError
from cai.core.records import CompletionRecord, ConstitutionRef, PromptRecord, SamplingParams

log = logging.getLogger(__name__)

SETS = ("redteam", "lookalike", "benign")
LOOKALIKE_LABELS = ("safe", "unsafe")
GENERATE_CHUNK = 512  # prompts per generate call: all of a model's prompts in the usual case


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
) -> dict[str, CompletionRecord]:
    """Each prompt's answer (prompt key -> record), generating only the missing ones.

    ``backend()`` is called only when something is missing, so a finished model is
    never loaded again.
    """
    from cai.core.jsonl import JsonlWriter, read_records
    from cai.stages.generate import completion_id, generate_completions

    ids = {p.key(): completion_id(p.key(), model, kind, params, system_prompt, 0) for p in prompts}
    path.parent.mkdir(parents=True, exist_ok=True)
    with JsonlWriter(path) as writer:
        todo = [p for p in prompts if ids[p.key()] not in writer]
        if todo:
            log.info("%s: answering %d prompt(s) (%d already in %s)", model, len(todo), len(prompts) - len(todo), path)
            for rec in generate_completions(todo, backend(), params, system_prompt=system_prompt,
                                            constitution=constitution, done=writer.__contains__,
                                            batch_size=GENERATE_CHUNK):
                writer.write(rec)
    wanted = {v: k for k, v in ids.items()}
    return {wanted[r.id]: r for r in read_records(path, CompletionRecord) if r.id in wanted}


def answer_text(record: CompletionRecord) -> str:
    """The answer's text."""
    return record.completion[0].content
