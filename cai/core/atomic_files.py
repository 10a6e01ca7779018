"""Whole-file writes that never leave a half-written file: a temp file in the same folder, fsync,
``os.replace``.

Derived outputs (``sft.jsonl``, ``preferences.jsonl``, ``stats.json``, model cards,
``eval.json``, reports, ``stage.json``) are rebuilt whole on every run and go
through :func:`write_atomic`, so a kill mid-write leaves the previous version
(or none), never a torn one, and no temp file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and ``os.replace``.

    The file gets the mode a plain ``open()`` would give it (``mkstemp`` makes 0600).

    >>> d = Path(tempfile.mkdtemp()); write_atomic(d / "x.json", "{}"); (d / "x.json").read_text()
    '{}'
    >>> [p.name for p in d.iterdir()]
    ['x.json']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_records_atomic(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """A JSONL file of pydantic records, written atomically; returns how many."""
    lines = [r.model_dump_json() + "\n" for r in records]
    write_atomic(path, "".join(lines))
    return len(lines)


def write_json_atomic(path: str | os.PathLike, obj: Any, **dumps: Any) -> None:
    """Pretty JSON, written atomically (``dumps`` go to :func:`json.dumps`, e.g. ``sort_keys``,
    ``default``)."""
    write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, **dumps) + "\n")
