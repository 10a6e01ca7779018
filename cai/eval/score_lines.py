"""Scores of answers (or of edited answers) as JSONL lines keyed by deterministic ids, filled resumably.

Shared by the best-of-n over-optimization study (:mod:`cai.eval.overoptimization`:
proxy and gold scores of each sampled answer) and the preference-model failure
probes (:mod:`cai.eval.pm_probes`: the PM's score of each controlled edit). A line
is a :class:`ScoreLine`; :func:`fill_scores` appends the lines a file lacks through
the project's resume loop (:func:`cai.core.resume.fill_jsonl`), so a rerun scores
only what is missing and a finished file never loads the scorer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from cai.core.records import SCHEMA_VERSION, make_id

CHUNK = 32  # items per scorer call (their lines are saved after each)


class ScoreLine(BaseModel):
    """One scorer's value for one answer, or for one edit of it (``variant``; ``""`` = as written).

    ``value`` is ``None`` when the scorer failed on it (``error`` says why).
    """

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    id: str
    scorer: str
    answer_id: str
    prompt_id: str
    variant: str = ""
    value: float | None = None
    error: str | None = None


def score_id(scorer: str, answer_id: str, variant: str = "") -> str:
    """Deterministic id of one score: the scorer's identity, the answer, the edit.

    >>> score_id("pm:/rm", "a1") == score_id("pm:/rm", "a1"), score_id("pm:/rm", "a1") == score_id("g", "a1")
    (True, False)
    """
    return make_id("score-line", scorer, answer_id, variant)


def score_line(scorer: str, answer_id: str, prompt_id: str, value: float | None,
               variant: str = "") -> ScoreLine:
    """A score line; a missing or non-finite value is kept as a failure (``value`` None, ``error`` why).

    >>> score_line("s", "a", "p", float("nan")).error, score_line("s", "a", "p", 1).value
    ('scorer gave nan', 1.0)
    """
    ok = value is not None and math.isfinite(value)
    return ScoreLine(id=score_id(scorer, answer_id, variant), scorer=scorer, answer_id=answer_id,
                     prompt_id=prompt_id, variant=variant, value=float(value) if ok else None,
                     error=None if ok else f"scorer gave {value!r}")


def fill_scores(path: Path, items: Sequence[Any], id_of: Callable[[Any], str],
                compute: Callable[[Sequence[Any]], list[ScoreLine]], *, chunk: int = CHUNK,
                make: Callable[[], Any] | None = None, desc: str | None = None) -> dict[str, ScoreLine]:
    """The score lines of ``items`` (by id), computing only those not yet in ``path``, ``chunk`` at a time.

    ``make`` (the scorer's model, loaded before the progress bar shows) and ``compute``
    run only when something is missing.
    """
    from cai.core.resume import fill_in_chunks

    return fill_in_chunks(path, items, id_of, compute, ScoreLine, chunk=chunk, what="score", desc=desc,
                          make=make)
