"""What the evaluation's stages share: timing a stage, and judgement files filled resumably.

:func:`stage` logs and sums how long each stage took (``eval.json``'s
``settings.last_run_timings_s``); :func:`fill` appends the judgement lines a file lacks
through the project's resume loop; :func:`by_answer` keys judgements by the answer they
judge. Used by :mod:`cai.eval.run`, :mod:`cai.eval.multiple_choice` and
:mod:`cai.eval.studies` (a module of its own so none of them imports another for these).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("cai.eval.run")

CHUNK = 64  # items per judge call (results are saved after each)


def fill(path: Path, items: Sequence[Any], id_of: Callable[[Any], str],
         compute: Callable[[Sequence[Any]], list[Any]], chunk: int = CHUNK, *,
         desc: str | None = None, make: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Judgements of ``items`` (by id), computing only those not yet in ``path``, ``chunk`` at a time.

    Through the project's resume loop (:func:`cai.core.resume.fill_jsonl`): each line is
    appended as soon as its chunk is judged, under a progress bar; ``make`` (the judge's
    backend, built before the bar shows) and ``compute`` run only when something is missing.
    """
    from cai.core.jsonl import read_records
    from cai.core.resume import fill_jsonl
    from cai.eval.schema import EvalJudgement

    unique: dict[str, Any] = {}
    for it in items:
        unique.setdefault(id_of(it), it)

    def produce(_backend: Any, done: Callable[[str], bool], bar: Any) -> Iterator[Any]:
        todo = [it for i, it in unique.items() if not done(i)]
        for start in range(0, len(todo), chunk):
            yield from compute(todo[start : start + chunk])

    path.parent.mkdir(parents=True, exist_ok=True)
    fill_jsonl(path, list(unique), make or (lambda: None), produce, what="judgement", desc=desc)
    return {r.id: r for r in read_records(path, EvalJudgement) if r.id in unique}


@contextlib.contextmanager
def stage(what: str, timings: dict[str, float]) -> Iterator[None]:
    """Log and record how long a stage took (seconds, summed over calls with the same name).

    >>> t = {}
    >>> with stage("x", t):
    ...     pass
    >>> list(t), t["x"] >= 0
    (['x'], True)
    """
    t0 = time.perf_counter()
    yield
    dt = time.perf_counter() - t0
    timings[what] = round(timings.get(what, 0.0) + dt, 3)
    log.info("%s: %.1f s", what, dt)


def by_answer(judged: dict[str, Any]) -> dict[str, Any]:
    """Judgements keyed by the answer they judge.

    >>> from types import SimpleNamespace as J
    >>> by_answer({"j1": J(answer_id="a1")})["a1"].answer_id
    'a1'
    """
    return {j.answer_id: j for j in judged.values()}
