"""Multiple-choice scoring for the benchmark sections (TruthfulQA, BBQ): rows read from JSONL, each row's
prompt and choices scored by ``Backend.score``, one JSONL line of raw log-probs per row, resumable.

The prompt is the benchmark's own plain text (lm-evaluation-harness's ``Q: ...\\nA:``), sent as an
assistant turn that each choice continues (:func:`continue_chat`): the model's chat template wraps it (for
SmolLM2, its default system prompt and the assistant header), and between the prompt's ``A:`` and the
choice there is exactly the harness's ``" "`` delimiter. A choice's score is its summed token
log-probability (no length normalisation: the harness's ``acc``, which the TruthfulQA and BBQ tasks
report). Prompts share long prefixes (TruthfulQA's six-shot preamble; a BBQ context asked in two polarities,
with and without its disambiguating sentence): the hf backend computes a shared prefix once and keeps it
across calls (:mod:`cai.backends.hf.prefix_cache`), and reads every choice of a row off one run of its
prompt (:func:`cai.backends.hf.score.score_shared`).

Each row's scores are appended to ``<eval folder>/<task>/<model>.jsonl`` as :class:`ChoiceScores`
lines keyed by a deterministic id (task, row content, prompt, choices, model), through
:func:`cai.core.resume.fill_jsonl`: a rerun scores only the rows that are missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from cai.core.errors import CaiError
from cai.core.records import SCHEMA_VERSION, Provenance, make_id

Task = Literal["truthfulqa", "bbq"]
T = TypeVar("T", bound=BaseModel)


class ChoiceScores(BaseModel):
    """One line of ``<task>/<model>.jsonl``: the log-probability of each choice of one row.

    ``logprobs[j]`` is the summed log-probability of ``choices[j]`` (with its leading space) after the
    row's prompt; ``None`` where the backend returned a non-finite value (the row then counts as a
    failure). ``row`` is the row's content key, ``index`` its position among the file's rows.
    """

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    id: str
    task: Task
    model: str  # the evaluated model's name in the spec
    row: str
    index: int
    choices: list[str]
    logprobs: list[float | None]
    provenance: Provenance


@dataclass(frozen=True)
class ChoiceItem:
    """What is scored for one row: its key, position, prompt text and choice continuations."""

    row: str
    index: int
    prompt: str
    choices: tuple[str, ...]


def read_rows(path: str | Path, model: type[T], limit: int | None = None) -> list[T]:
    """The rows of a benchmark JSONL file as ``model``; a bad row is one line ``file:line: field: message``.

    An empty file is an error too (a section with no rows measures nothing).
    """
    from cai.core.jsonl import read_jsonl

    rows = list(read_jsonl(path, model))
    if not rows:
        raise CaiError(f"{path}: no rows", hint="give a JSONL file with one benchmark row per line")
    return rows[:limit] if limit else rows


def row_key(row: BaseModel) -> str:
    """A row's content key (the same row always has the same key, wherever it sits in the file)."""
    return make_id("mc-row", row.model_dump(mode="json"))


def continue_chat(text: str) -> list[dict[str, str]]:
    """The chat whose assistant turn is the prompt text, continued by each choice.

    >>> continue_chat("Q: Why?\\nA:")
    [{'role': 'assistant', 'content': 'Q: Why?\\nA:'}]
    """
    return [{"role": "assistant", "content": text}]


def choice_id(task: str, item: ChoiceItem, model: str, kind: str) -> str:
    """Id of one row's scores under one model: changes with the row, the prompt, the choices or the model."""
    return make_id("eval-mc", task, item.row, item.prompt, list(item.choices), model, kind)


def finite(x: float) -> float | None:
    """``x``, or None when it is not a finite number.

    >>> finite(-1.5), finite(float("-inf")), finite(float("nan"))
    (-1.5, None, None)
    """
    return x if math.isfinite(x) else None


def score_choices(path: Path, task: Task, items: Sequence[ChoiceItem], name: str, model: str, kind: str,
                  make: Callable[[], Any], *, chunk: int, seed: int,
                  desc: str | None = None) -> dict[str, ChoiceScores]:
    """Each row's choice log-probs (row key -> line), scoring only the rows not yet in ``path``.

    ``chunk`` rows go to one ``score`` call (their scores are saved after it): the forward pass over a
    call's continuations holds ``[continuations, tokens, vocab]`` logits, so keep it small for long
    choices. ``make()`` (the backend) is called only when something is missing. Raises
    :class:`~cai.backends.protocol.ScoringUnsupported` when the backend cannot score whole answers.
    """
    from cai.core.jsonl import read_records
    from cai.core.resume import fill_jsonl

    unique = {it.row: it for it in items}
    ids = {r: choice_id(task, it, model, kind) for r, it in unique.items()}

    def produce(be: Any, done: Callable[[str], bool], bar: Any) -> Iterator[ChoiceScores]:
        todo = [it for r, it in unique.items() if not done(ids[r])]
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            scores = be.score([continue_chat(it.prompt) for it in part], [list(it.choices) for it in part])
            for it, s in zip(part, scores):
                yield ChoiceScores(id=ids[it.row], task=task, model=name, row=it.row, index=it.index,
                                   choices=list(it.choices), logprobs=[finite(float(v)) for v in s],
                                   provenance=Provenance(model=model, backend=kind, seed=seed))

    path.parent.mkdir(parents=True, exist_ok=True)
    fill_jsonl(path, set(ids.values()), make, produce, what=f"{task} row", desc=desc or f"{task} {name}")
    wanted = {v: k for k, v in ids.items()}
    return {wanted[r.id]: r for r in read_records(path, ChoiceScores) if r.id in wanted}


def argmax_first(values: Sequence[float]) -> int:
    """Index of the largest value, the first on a tie (numpy's ``argmax``, which the harness uses).

    >>> argmax_first([-3.0, -1.0, -1.0]), argmax_first([-2.0])
    (1, 0)
    """
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best
