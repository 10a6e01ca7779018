"""JSONL in and out: strict reading, crash-safe appending, and export to ``datasets``.

Stages append each result as soon as it exists, keyed by a deterministic id, so a
rerun resumes and skips finished ids, and nothing a model said is ever lost:

* :func:`read_jsonl` reads strictly; every problem is a one-line
  :class:`~cai.core.errors.CaiError` naming ``file:line``. Sources that are not a
  plain ``.jsonl`` file (CSV/JSON/parquet, ``datasets`` folders, hub ids, column
  mappings) go through :mod:`cai.sources` and name ``source:row N``.
* :class:`JsonlWriter` appends one fsync'd line per record under a lock file; a
  run killed mid-write leaves at most a torn last line, which the next run moves
  to ``<file>.torn`` before resuming, and a lock whose process is gone is taken over.

Export to ``datasets`` lives in :mod:`cai.stages.export`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cai.core.errors import CaiError, pydantic_error
from cai.core.records import PreferenceRecord, PromptRecord
from cai.sources.columns import check_columns, rename
from cai.sources.formats import pair_format, prompt_format
from cai.sources.load import adapt_row, source_rows
from cai.sources.spec import Source, parse_source

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
PathLike = str | os.PathLike

_TORN_HINT = (
    "delete that partial last line, or rerun the stage that wrote it: it repairs the file and resumes"
)


# --------------------------------------------------------------------------- reading


def _parse_line(raw: bytes, where: str, last: bool) -> dict[str, Any] | None:
    """One JSONL line as a dict, ``None`` for a blank line, or a one-line CaiError.

    ``last`` says the line had no trailing newline (the file's last line), where a
    parse failure most likely means a write was cut off.

    >>> _parse_line(b'{"id": "a"}\\n', "f:1", False)
    {'id': 'a'}
    >>> _parse_line(b'  \\n', "f:2", False) is None
    True
    >>> _parse_line(b'[1]\\n', "f:3", False)
    Traceback (most recent call last):
    cai.core.errors.CaiError: f:3: expected a JSON object, got list (fix: write one {...} object a line)
    >>> _parse_line(b'{"id": "a", "pro', "f:4", True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cai.core.errors.CaiError: f:4: line is cut off (torn write?): ...
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if last:
            raise CaiError(
                f"{where}: line is cut off (torn write?): it ends mid-character", hint=_TORN_HINT
            ) from None
        raise CaiError(
            f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
            hint="save the file as UTF-8",
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip(" \t\r\n"):
        return None
    try:
        obj = json.loads(text)
    except RecursionError:
        raise CaiError(f"{where}: not valid JSON: nested too deeply", hint="flatten this record") from None
    except ValueError as e:
        if last and text.lstrip().startswith("{"):
            raise CaiError(
                f"{where}: line is cut off (torn write?): {_json_msg(e)}", hint=_TORN_HINT
            ) from None
        raise CaiError(
            f"{where}: not valid JSON: {_json_msg(e)}", hint="write one JSON object a line"
        ) from None
    if not isinstance(obj, dict):
        raise CaiError(
            f"{where}: expected a JSON object, got {_json_type(obj)}", hint="write one {...} object a line"
        )
    return obj


def _json_msg(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} (column {e.colno})"
    return str(e)


def _json_type(obj: Any) -> str:
    """The JSON name of a parsed value's type.

    >>> _json_type([1]), _json_type("s"), _json_type(None), _json_type(True), _json_type(1.5)
    ('list', 'string', 'null', 'boolean', 'number')
    """
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "boolean"
    if isinstance(obj, (int, float)):
        return "number"
    return {str: "string", list: "list"}.get(type(obj), type(obj).__name__)


def _iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """``(line_number, raw_bytes, is_unterminated_last_line)`` for each line of a file."""
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            yield n, raw, not raw.endswith(b"\n")


def _check_file(path: PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        raise CaiError(f"{p}: is a directory, expected a JSONL file", hint="give the path of a .jsonl file")
    if not p.exists():
        raise CaiError(f"{p}: no such file", hint="check the path")
    if not os.access(p, os.R_OK):
        raise CaiError(f"{p}: cannot read it (permission denied)", hint="check the file's permissions")
    return p


def read_jsonl(path: PathLike, model: type[T]) -> Iterator[T]:
    """Validate each record of a source as ``model``, lazily.

    A plain ``.jsonl`` file is read line by line: a missing file or a directory
    fails at once; bad lines fail when reached, each as a :class:`CaiError`
    ``file:line: field: message``. Any other source (a CSV/JSON/parquet file, a
    ``datasets`` folder, a hub id, or a column mapping; see :mod:`cai.sources`) is
    loaded through ``datasets``, its errors naming ``source:row N: field``.
    """
    src = parse_source(path)
    if src.kind != "jsonl":
        return (rec for _, _, rec in _source_records(src, model))
    p = _check_file(src.location)
    return _validate_lines(p, model, src)


def _validate_lines(path: Path, model: type[T], src: Source | None = None) -> Iterator[T]:
    for _, rec in _numbered(path, model, src):
        yield rec


def adapter_kind(model: type[BaseModel]) -> str:
    """Which format adapters a record type takes: ``prompt``, ``pair`` or ``other`` (none)."""
    if issubclass(model, PromptRecord):
        return "prompt"
    return "pair" if issubclass(model, PreferenceRecord) else "other"


def _adapt_line(obj: dict[str, Any], model: type[BaseModel], src: Source | None,
                where: str) -> dict[str, Any]:
    """A JSONL line through the column mapping and, for rows in a published format, its adapter; a native
    row (or one no adapter fits) is left for the record's own validation, as before."""
    kind = adapter_kind(model)
    if src is not None and src.columns:
        check_columns(src.columns, list(obj), where)
        return adapt_row(rename(obj, src.columns), kind, where, src.text, frozenset(model.model_fields))
    if (kind == "pair" and pair_format(obj) not in (None, "native")) or (
            kind == "prompt" and prompt_format(obj) not in (None, "prompt")):
        return adapt_row(obj, kind, where, _source_text(src, where), frozenset(model.model_fields))
    return obj


def _source_text(src: Source | None, where: str) -> str:
    """The source text of a line's location (``file:line`` -> ``file``)."""
    return src.text if src is not None else where.rpartition(":")[0]


def validate_record(obj: dict[str, Any], model: type[T], where: str) -> T:
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        raise pydantic_error(e, where) from None
    except (TypeError, ValueError, RecursionError) as e:  # a validator tripped over odd input
        raise CaiError(f"{where}: (record): {type(e).__name__}: {e}", hint="correct this record") from None


def _numbered(path: Path, model: type[T], src: Source | None = None) -> Iterator[tuple[int, T]]:
    """``(line_number, record)`` for each non-blank line, validated as ``model``."""
    for n, raw, last in _iter_lines(path):
        where = f"{path}:{n}"
        obj = _parse_line(raw, where, last)
        if obj is None:
            continue
        yield n, validate_record(_adapt_line(obj, model, src, where), model, where)


def _source_records(src: Source, model: type[T]) -> Iterator[tuple[str, str, T]]:
    """``(where, "row N", record)`` for each row of a non-JSONL source, validated as ``model``."""
    rows = source_rows(src, adapter_kind(model), frozenset(model.model_fields))
    for n, (where, row) in enumerate(rows, start=1):
        yield where, f"row {n}", validate_record(row, model, where)


def _located(path: PathLike, model: type[T]) -> Iterator[tuple[str, str, T]]:
    """``(where, "line N" or "row N", record)`` for any source."""
    src = parse_source(path)
    if src.kind != "jsonl":
        yield from _source_records(src, model)
        return
    p = _check_file(src.location)
    for n, rec in _numbered(p, model, src):
        yield f"{p}:{n}", f"line {n}", rec


def read_records(path: PathLike, model: type[T]) -> list[T]:
    """All records of a source (a JSONL file or any :mod:`cai.sources` source), validated as ``model``."""
    return list(read_jsonl(path, model))


def read_prompts(path: PathLike) -> list[PromptRecord]:
    """All prompts of a source; an empty one, or two prompts with the same ``id``, is an error."""
    prompts: list[PromptRecord] = []
    seen: dict[str, str] = {}
    for where, label, rec in _located(path, PromptRecord):
        if rec.id is not None and rec.id in seen:
            raise CaiError(f"{where}: id: duplicate prompt id {rec.id!r} (first at {seen[rec.id]})",
                           hint="give each prompt its own id, or drop the ids")
        if rec.id is not None:
            seen[rec.id] = label
        prompts.append(rec)
    if not prompts:
        plain = parse_source(path).kind == "jsonl"
        raise CaiError(f"{path}: no prompts", hint='write one {"prompt": "..."} object a line' if plain
                       else "is this the right source? it has no rows")
    return prompts


# --------------------------------------------------------------------------- writing


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (POSIX).

    >>> _pid_alive(os.getpid()), _pid_alive(0), _pid_alive(-5)
    (True, False, False)
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True


def _read_pid(lock: Path) -> int | None:
    try:
        return int(lock.read_text(encoding="utf-8", errors="replace").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _age(path: Path) -> float:
    """Seconds since ``path`` was modified (infinite if it is gone)."""
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _last_newline_end(fh, size: int, chunk: int = 1 << 16) -> int:
    """Offset just past the last ``\\n`` of an open binary file (0 if none)."""
    pos = size
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        fh.seek(pos)
        i = fh.read(step).rfind(b"\n")
        if i >= 0:
            return pos + i + 1
    return 0


def _is_complete_object(fragment: bytes) -> bool:
    """Whether an unterminated last line is nonetheless a whole JSON object.

    >>> _is_complete_object(b'{"id": "a"}'), _is_complete_object(b'{"id": "a'), _is_complete_object(b'\\xff')
    (True, False, False)
    """
    try:
        return isinstance(json.loads(fragment.decode("utf-8")), dict)
    except (ValueError, RecursionError):
        return False


def _record_line(record: BaseModel | dict[str, Any]) -> tuple[str, str]:
    """``(id, json_line_without_newline)`` for a record.

    >>> _record_line({"id": "x", "n": 1})
    ('x', '{"id": "x", "n": 1}')
    """
    if isinstance(record, BaseModel):
        rid, line = getattr(record, "id", None), record.model_dump_json()
    elif isinstance(record, dict):
        rid, line = record.get("id"), json.dumps(record, ensure_ascii=False)
    else:
        raise TypeError(f"expected a pydantic model or a dict, got {type(record).__name__}")
    if not isinstance(rid, str) or not rid:
        raise ValueError(f"record has no string 'id': {line[:80]}")
    return rid, line


class JsonlWriter:
    """Append records to a JSONL file, one fsync'd line each, skipping known ids.

    Opening takes ``<path>.lock`` (taking over a lock whose process is gone),
    moves a torn last line to ``<path>.torn``, and then either loads the ids
    already written (``resume=True``) or empties the file (``resume=False``).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "out.jsonl"
    >>> with JsonlWriter(path) as w:
    ...     w.write({"id": "a", "text": "hi"}), w.write({"id": "a", "text": "again"})
    (True, False)
    >>> with JsonlWriter(path) as w:
    ...     "a" in w, len(w)
    (True, 1)
    """

    def __init__(self, path: PathLike, resume: bool = True):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.torn_path = self.path.with_name(self.path.name + ".torn")
        self.ids: set[str] = set()
        self._fd: int | None = None
        self._locked = False
        if self.path.is_dir():
            raise CaiError(f"{self.path}: is a directory, expected a JSONL file path",
                           hint="give a file path for the output")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
        except OSError as e:
            raise CaiError(f"{self.path}: cannot write here: {e.strerror}",
                           hint="choose a folder you can write to") from None
        try:
            self._repair_torn_tail()
            if resume:
                self.ids = self._existing_ids()
            elif self.path.exists() and self.path.stat().st_size:
                log.warning("%s: starting fresh (resume off): discarding its existing records", self.path)
                os.truncate(self.path, 0)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except BaseException as e:
            self._unlock()
            if isinstance(e, OSError):
                raise CaiError(f"{self.path}: cannot write here: {e.strerror}",
                               hint="choose a folder you can write to") from None
            raise

    # -- lock
    def _lock(self) -> None:
        for _ in range(3):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._check_stale_lock()
                continue
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
            self._locked = True
            return
        raise CaiError(
            f"{self.path}: could not take {self.lock_path}", hint="check that no other run writes it"
        )

    def _check_stale_lock(self) -> None:
        """Raise if the lock's owner is alive; otherwise remove the stale lock."""
        pid = _read_pid(self.lock_path)
        busy = f"wait for it to finish, or delete {self.lock_path} if that run is gone"
        if pid == os.getpid():
            raise CaiError(f"{self.path} is already open for writing in this process",
                           hint="write each output file from one place only")
        if pid is not None and _pid_alive(pid):
            raise CaiError(f"{self.path} is being written by another run (pid {pid})", hint=busy)
        if pid is None and _age(self.lock_path) < 5:  # just created, its pid not written yet
            raise CaiError(f"{self.path} is being written by another run (pid unknown)", hint=busy)
        log.warning("%s: taking over a stale lock (pid %s is gone)", self.lock_path, pid)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)

    def _unlock(self) -> None:
        if self._locked and _read_pid(self.lock_path) == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_path)
        self._locked = False

    # -- repair and resume
    def _repair_torn_tail(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            cut = _last_newline_end(fh, size)
            fh.seek(cut)
            fragment = fh.read()
            if _is_complete_object(fragment):  # whole record, only the newline is missing
                fh.seek(0, os.SEEK_END)
                fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())
                return
            with self.torn_path.open("ab") as torn:  # save the bytes before cutting them off
                torn.write(fragment + b"\n")
                torn.flush()
                os.fsync(torn.fileno())
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())
        log.warning(
            "%s: moved %d bytes of a cut-off last line (torn write) to %s",
            self.path,
            len(fragment),
            self.torn_path,
        )

    def _existing_ids(self) -> set[str]:
        ids: set[str] = set()
        if not self.path.exists():
            return ids
        for n, raw, last in _iter_lines(self.path):
            where = f"{self.path}:{n}"
            obj = _parse_line(raw, where, last)
            if obj is None:
                continue
            rid = obj.get("id")
            if not isinstance(rid, str) or not rid:
                raise CaiError(
                    f"{where}: id: missing or not a string",
                    hint="every line this stage writes has an 'id'; is this the right file?",
                )
            ids.add(rid)
        return ids

    # -- public API
    def __contains__(self, rid: object) -> bool:
        return rid in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def write(self, record: BaseModel | dict[str, Any]) -> bool:
        """Append ``record`` as one line and fsync; False (nothing written) if its id is known."""
        if self._fd is None:
            raise ValueError(f"{self.path}: writer is closed")
        rid, line = _record_line(record)
        if rid in self.ids:
            return False
        data = (line + "\n").encode("utf-8")
        start = os.fstat(self._fd).st_size
        done = 0
        try:
            while done < len(data):  # one write() for the whole line; loop only on a short write
                done += os.write(self._fd, data[done:])
            os.fsync(self._fd)
        except BaseException as e:  # disk full, Ctrl-C...: leave no partial line behind
            if done < len(data):
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
            else:  # the whole line is in the file (Ctrl-C during fsync): keep it
                self.ids.add(rid)
            if isinstance(e, OSError):
                raise CaiError(
                    f"{self.path}: cannot write: {e.strerror}",
                    hint="free disk space and rerun: records written so far are kept",
                ) from None
            raise
        self.ids.add(rid)
        return True

    def close(self) -> None:
        """Close the file and release the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._unlock()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JsonlWriter({str(self.path)!r}, records={len(self.ids)})"
