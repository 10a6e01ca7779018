"""A zygote that SIGKILLs a ``cai`` command at seeded random moments, then lets it finish.

Run as ``python -m tests.helpers.kill_harness SPECS.json RESULTS.json`` (a list of specs). The process imports
cai, torch and transformers once (running no torch op, so no thread pool exists
to break across ``fork``), then for each trial ``os.fork()``s a child that runs
the CLI entry :func:`cai.cli.main` in-process with ``sys.argv`` from the spec.
The parent kills the child with SIGKILL either after a random delay (early
kills: model loading, resume scan, lock take-over; once a run got to the end,
every later run is killed this way, while it rebuilds the outputs) or once
the watched append-only files have grown by a random number of bytes. Children write
through :class:`ChunkedOs`, which splits each large ``os.write`` of
:mod:`cai.core.jsonl` into short writes with a pause between them (a short write is a
path :class:`cai.core.jsonl.JsonlWriter` handles), so byte-targeted kills land
mid-record and leave real torn tails.

After every run the parent snapshots the watched files (:class:`TornBook`):
the complete lines must extend those of the previous snapshot (append-only,
nothing lost), and each torn tail a kill left must turn up, byte for byte, as
the next line of ``<file>.torn`` once a later run repairs the file.

SPEC keys: ``argv`` (after ``cai``), ``out`` (the token in ``argv`` replaced by
the output path), ``watch`` (append-only files, relative to it), ``seed``,
``kills`` (how many kills to reach), ``max_trials``, ``pause`` (seconds before
each short write), ``work`` (a folder for the runs and their logs) and
``warm`` (a model whose tokenizer and config to load once, ahead of the trials).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any


class ChunkedOs:
    """``os`` for :mod:`cai.core.jsonl`, but a write longer than ``chunk`` bytes is cut short after a pause.

    >>> import tempfile
    >>> fd, p = tempfile.mkstemp()
    >>> ChunkedOs(4, 0.0).write(fd, b"abcdefgh"), ChunkedOs(4, 0.0).write(fd, b"xy")
    (4, 2)
    """

    def __init__(self, chunk: int, pause: float):
        self._chunk, self._pause = chunk, pause

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: bytes) -> int:
        if len(data) <= self._chunk:
            return os.write(fd, data)
        time.sleep(self._pause)
        return os.write(fd, data[: self._chunk])


def split_tail(data: bytes) -> tuple[bytes, bytes]:
    """``(complete_lines, tail)``: everything up to the last newline, and what follows it.

    >>> split_tail(b'{"a": 1}\\n{"b"')
    (b'{"a": 1}\\n', b'{"b"')
    >>> split_tail(b"")
    (b'', b'')
    """
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]


def is_whole_record(tail: bytes) -> bool:
    """Whether an unterminated tail is a whole JSON object (the writer then only adds the newline).

    >>> is_whole_record(b'{"id": "x"}'), is_whole_record(b'{"id": "'), is_whole_record(b"")
    (True, False, False)
    """
    try:
        return isinstance(json.loads(tail.decode("utf-8")), dict)
    except (ValueError, RecursionError):
        return False


def _run_child(argv: list[str], log: Path, chunk: int, pause: float) -> None:
    """In the forked child: run ``cai ARGV`` in-process and exit with its code (never returns)."""
    code = 70
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        import cai.core.jsonl
        from cai.cli import main

        if chunk:
            cai.core.jsonl.os = ChunkedOs(chunk, pause)  # type: ignore[assignment]
        sys.argv = ["cai", *argv]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - report anything, then exit
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _fork(argv: list[str], log: Path, chunk: int = 0, pause: float = 0.0) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _run_child(argv, log, chunk, pause)
    return pid


def _size(paths: list[Path]) -> int:
    return sum(p.stat().st_size if p.exists() else 0 for p in paths)


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def run_to_end(argv: list[str], log: Path) -> int:
    """The exit code of one uninterrupted run."""
    _, status = os.waitpid(_fork(argv, log), 0)
    return _exit_code(status)


class TornBook:
    """Bookkeeping of one append-only file across kills: complete lines only grow; torn tails are kept.

    After each run, :meth:`snapshot` checks that the complete lines of the last
    snapshot are still the file's start, and follows the torn tail: a tail left
    by a kill must, once ``<file>.torn`` grows, be its new last line (``moved``
    lists them in order); a tail may not change or vanish any other way.
    """

    def __init__(self, path: Path):
        self.path, self.torn_path = path, path.with_name(path.name + ".torn")
        self.lines = b""
        self.pending: bytes | None = None
        self.torn_size = 0
        self.moved: list[str] = []
        self.violations: list[str] = []

    def snapshot(self, when: str) -> bool:
        """Check the file after a run; True if the run left a new torn tail."""
        data = self.path.read_bytes() if self.path.exists() else b""
        torn = self.torn_path.read_bytes() if self.torn_path.exists() else b""
        if not data.startswith(self.lines):
            self.violations.append(f"{when}: {self.path.name} lost or changed complete lines it had")
        if len(torn) > self.torn_size:
            added = torn[self.torn_size :]
            if self.pending is None or added != self.pending + b"\n":
                self.violations.append(f"{when}: {self.torn_path.name} got bytes that were no torn tail: "
                                       f"{added[:80]!r}")
            else:
                self.moved.append(self.pending.decode("latin-1"))
            self.pending, self.torn_size = None, len(torn)
        lines, tail = split_tail(data)
        if self.pending is not None and (tail != self.pending or lines != self.lines):
            self.violations.append(f"{when}: {self.path.name}: a torn tail vanished without being kept")
        self.lines = lines
        if tail and is_whole_record(tail):
            self.lines = data + b"\n"  # the next run only adds the missing newline
            return False
        fresh = bool(tail) and self.pending is None
        self.pending = tail or None
        return fresh


def _with_out(argv: list[str], out_token: str, out: Path) -> list[str]:
    return [str(out) if a == out_token else a for a in argv]


def trials(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """The reference run, the kill trials, and the final run; returns what happened."""
    rng = random.Random(spec["seed"])
    argv, token = spec["argv"], spec["out"]
    ref, run = work / "reference", work / "killed"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    t0 = time.monotonic()
    ref_rc = run_to_end(_with_out(argv, token, ref), logs / "reference.log")
    ref_seconds = time.monotonic() - t0
    ref_watch = [ref / w for w in spec["watch"]]
    total = max(_size(ref_watch), 1)

    watch = [run / w for w in spec["watch"]]
    books = {str(p): TornBook(p) for p in watch}
    events: list[dict[str, Any]] = []
    kills, finished = 0, None
    for n in range(spec["max_trials"]):
        if kills >= spec["kills"]:
            break
        before = _size(watch)
        early = n % 4 == 0 or finished is not None
        if finished is not None:  # all written: kill the reruns (resume scan, rebuilding the outputs)
            delay = rng.uniform(0.0, 0.9 * finished)
        else:  # early: in the first ~40% of a whole run; else: a byte target spreading kills over the run
            delay = rng.uniform(0.0, 0.4 * ref_seconds) if early else None
        grow = None if early else rng.randint(1, max(2, int(1.6 * total / spec["kills"])))
        chunk = rng.randint(32, 160)
        pid = _fork(_with_out(argv, token, run), logs / f"trial-{n:02d}.log", chunk, spec["pause"])
        start = time.monotonic()
        killed, status = False, None
        while True:
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid:
                status = st
                break
            if (delay is not None and time.monotonic() - start >= delay) or (
                grow is not None and _size(watch) >= before + grow
            ):
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                killed = True
                break
            time.sleep(0.0005)
        kills += killed
        if not killed and _exit_code(status) == 0:
            finished = time.monotonic() - start
        torn = [p.name for p in watch if books[str(p)].snapshot(f"trial {n}")]
        events.append({
            "trial": n, "kind": "delay" if early else "bytes", "delay": delay, "grow": grow, "chunk": chunk,
            "killed": killed, "code": _exit_code(status), "seconds": round(time.monotonic() - start, 3),
            "size_before": before, "size_after": _size(watch), "torn": torn,
        })

    final_rc = run_to_end(_with_out(argv, token, run), logs / "final.log")
    for book in books.values():
        book.snapshot("final run")
        if book.pending is not None:
            book.violations.append(f"final run: {book.path.name}: a torn tail is left")
    return {
        "reference": str(ref), "reference_code": ref_rc, "reference_seconds": round(ref_seconds, 3),
        "run": str(run), "final_code": final_rc, "kills": kills, "events": events,
        "torn": {k: b.moved for k, b in books.items()},
        "violations": [v for b in books.values() for v in b.violations],
        "final_log": (logs / "final.log").read_text(errors="replace")[-3000:],
        "reference_log": (logs / "reference.log").read_text(errors="replace")[-3000:],
    }


def main() -> None:
    """``python -m tests.helpers.kill_harness SPECS.json RESULTS.json``: a list of specs in, a list of results
    out."""
    spec_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    specs = json.loads(spec_path.read_text())
    import torch  # noqa: F401 - imported once here, shared by every forked child

    torch.set_num_threads(1)
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    import cai.backends.hf.backend  # noqa: F401
    import cai.cli  # noqa: F401
    import cai.stages.critique.loop  # noqa: F401
    import cai.stages.critique.outputs  # noqa: F401
    import cai.stages.label.labeler  # noqa: F401
    import cai.stages.label.outputs  # noqa: F401

    for warm in {s["warm"] for s in specs if s.get("warm")}:  # transformers imports lazily: pay once, here
        from transformers import AutoConfig, GenerationConfig

        AutoTokenizer.from_pretrained(warm)
        AutoConfig.from_pretrained(warm)
        GenerationConfig.from_pretrained(warm)
        import transformers.generation.utils  # noqa: F401
        import transformers.models.llama.modeling_llama  # noqa: F401
    results = [trials(spec, Path(spec["work"])) for spec in specs]
    result_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
