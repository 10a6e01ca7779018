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
    from cai.core.resume import fill_in_chunks
    from cai.eval.schema import EvalJudgement

    return fill_in_chunks(path, items, id_of, compute, EvalJudgement, chunk=chunk, what="judgement",
                          desc=desc, make=make)


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
