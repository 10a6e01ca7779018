"""The one resume loop: append to a JSONL file every record it lacks, with progress and a clean Ctrl-C.

Every stage that asks a model for records (generate, critique, label, the
audits, the evaluation) writes them through :func:`fill_jsonl`:

1. open the file with :class:`~cai.core.jsonl.JsonlWriter` (resume: ids already
   there are skipped; a torn last line is set aside);
2. if every wanted id is there, stop: no model is loaded;
3. else build the backend (``make()``: a bad model fails here, before any progress
   is shown), call ``produce(backend, done, bar)`` once and append each record it
   yields, one ``fsync``'d line at a time, under a progress bar with an ETA;
4. Ctrl-C or a mid-run :class:`~cai.core.errors.CaiError` (a server died) says
   how many records were kept and to rerun the same command to resume.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from cai.core.errors import resumable
from cai.core.jsonl import JsonlWriter

log = logging.getLogger(__name__)

B = TypeVar("B")
Done = Callable[[str], bool]


@dataclass(frozen=True)
class Filled:
    """What :func:`fill_jsonl` did: ids wanted, already in the file, written now, and the file's size
    after."""

    path: Path
    wanted: int
    before: int
    written: int
    in_file: int

    @property
    def complete(self) -> bool:
        return self.before + self.written >= self.wanted


def fill_jsonl(path: str | Path, ids: Collection[str], make: Callable[[], B],
               produce: Callable[[B, Done, Any], Iterable[BaseModel]], *, what: str = "record",
               desc: str | None = None, resume: bool = True) -> Filled:
    """Append to ``path`` the records of ``ids`` it lacks, made by ``produce(make(), done, bar)``.

    ``done(id)`` tells ``produce`` what to skip; ``bar`` is the progress bar (``bar.n``
    records are there; its postfix can say what the model is doing). Neither
    ``make`` nor ``produce`` is called when nothing is missing. ``resume=False``
    starts the file afresh.
    """
    from tqdm import tqdm

    path = Path(path)
    wanted = set(ids)
    with JsonlWriter(path, resume=resume) as writer:
        before = sum(i in writer for i in wanted)
        if before == len(wanted):
            log.info("all %d %s(s) already in %s: nothing to do", len(wanted), what, path)
            return Filled(path, len(wanted), before, 0, len(writer))
        backend = make()
        written = 0
        # Records come in bursts (a batch finishes at once): draw every update, and estimate the time left
        # from the average rate since the start (smoothing=0), not from the gap before a burst's first
        # record, which would promise hours for a minute's work.
        with resumable(path, writer, what), tqdm(total=len(wanted), initial=before, desc=desc or what,
                                                 unit=what, dynamic_ncols=True, mininterval=0,
                                                 smoothing=0) as bar:
            for rec in produce(backend, writer.__contains__, bar):
                written += writer.write(rec)
                bar.update(1)
        log.info("wrote %d new %s(s) to %s (%d in the file)", written, what, path, len(writer))
        return Filled(path, len(wanted), before, written, len(writer))


def fill_in_chunks(path: str | Path, items: Iterable[Any], id_of: Callable[[Any], str],
                   compute: Callable[[list[Any]], Iterable[BaseModel]], model: type[B], *, chunk: int = 64,
                   what: str = "record", desc: str | None = None,
                   make: Callable[[], Any] | None = None) -> dict[str, B]:
    """The ``model`` records of ``items`` (by ``id_of``), computing only those not yet in ``path``,
    ``chunk`` items per ``compute`` call, each line appended as soon as its chunk is done
    (:func:`fill_jsonl`); ``make`` (a model to load before the bar shows) and ``compute`` run only when
    something is missing. Duplicate ids are computed once.
    """
    from cai.core.jsonl import read_records

    unique: dict[str, Any] = {}
    for it in items:
        unique.setdefault(id_of(it), it)

    def produce(_made: Any, done: Callable[[str], bool], bar: Any) -> Iterable[BaseModel]:
        todo = [it for i, it in unique.items() if not done(i)]
        for start in range(0, len(todo), chunk):
            yield from compute(todo[start : start + chunk])

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fill_jsonl(path, list(unique), make or (lambda: None), produce, what=what, desc=desc)
    return {r.id: r for r in read_records(path, model) if r.id in unique}  # type: ignore[attr-defined]
