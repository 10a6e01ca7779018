"""Run stages in order, skipping those whose inputs and config have not changed.

A :class:`Stage` names its dependencies and says what determines its output
(``fingerprint``: its config plus content hashes of the files it reads). The
stage's **key** is a hash of that fingerprint and the keys of the stages it
depends on, so a change anywhere upstream changes every key downstream.

Each stage works in ``run_dir/<name>/`` and, when it finishes, writes
``run_dir/<name>/stage.json`` with its key, outputs and wall time. On the next
run a stage whose ``stage.json`` holds the same key is skipped. A stage whose key
changed starts in a fresh folder; the old one is renamed
``<name>.<old key>.old`` (never deleted), and a stage that was interrupted with
the same key resumes in place (the stages themselves skip finished record ids).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.core.atomic_files import write_json_atomic
from cai.core.errors import CaiError
from cai.core.records import make_id, utc_now

log = logging.getLogger(__name__)

STATE_FILE = "stage.json"


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (first 16 hex), or of a directory's files, sorted by path; of any other
    record source (a hub id, ``LOCATION:CONFIG:SPLIT#mapping``) see :func:`cai.sources.load.source_digest`.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = p.write_text("hi")
    >>> file_digest(p)
    '8f434346648f6b96'
    """
    p = Path(path)
    if not p.exists():  # a hub id, or a source with a config, split or column mapping (cai.sources)
        from cai.sources.spec import parse_source

        src = parse_source(os.fspath(path))
        if src.kind == "hub" or src.text != src.location:
            from cai.sources.load import source_digest

            try:
                return source_digest(src.text, file_digest)
            except CaiError as exc:
                if src.kind != "hub":
                    raise
                raise SourceUnavailable(exc.message, hint=exc.hint) from None
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode())
            h.update(bytes.fromhex(file_digest(f)))
    elif p.is_file():
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    else:
        raise CaiError(f"{p}: no such file or directory", hint="check the path in the recipe")
    return h.hexdigest()[:16]


class SourceUnavailable(CaiError):
    """A hub dataset that cannot be read here (offline and not cached, or not reachable): a run stops on
    it; a plan (``--dry-run``) shows the stages that depend on it with their keys unknown."""


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline.

    ``fingerprint(ctx)`` returns what determines the output (JSON-able);
    ``run(ctx)`` does the work in ``ctx.dir(name)`` and returns a JSON-able dict
    of outputs (paths, counts, metrics) that later stages read via
    ``ctx.outputs[name]``.
    """

    name: str
    deps: tuple[str, ...]
    fingerprint: Callable[[RunContext], Any]
    run: Callable[[RunContext], dict[str, Any]]


@dataclass
class RunContext:
    """What stages share: the run directory, the outputs and keys of finished stages."""

    run_dir: Path
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def rel(self, path: Path) -> str:
        """A path as stored in ``stage.json``: relative to the run directory (so the directory can move)."""
        return str(Path(path).relative_to(self.run_dir))

    def output(self, stage: str, key: str) -> Path:
        """An output path of a finished stage."""
        return self.run_dir / self.outputs[stage][key]


@dataclass
class StageResult:
    name: str
    status: str  # "ran", "skipped", "not selected"
    key: str | None = None
    seconds: float = 0.0
    outputs: dict[str, Any] = field(default_factory=dict)


def read_state(stage_dir: Path) -> dict[str, Any] | None:
    """The ``stage.json`` of a finished stage, or None."""
    try:
        return json.loads((stage_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_state(stage_dir: Path, state: dict[str, Any]) -> None:
    """Write ``stage.json`` atomically."""
    write_json_atomic(stage_dir / STATE_FILE, state, sort_keys=True, default=str)


def select(stages: Sequence[Stage], start: str | None, stop: str | None) -> list[str]:
    """Names of the stages from ``start`` to ``stop`` inclusive.

    >>> st = [Stage(n, (), lambda c: None, lambda c: {}) for n in "abcd"]
    >>> select(st, "b", "c"), select(st, None, "b"), select(st, "c", None)
    (['b', 'c'], ['a', 'b'], ['c', 'd'])
    """
    names = [s.name for s in stages]
    for label, value in (("--from", start), ("--until", stop)):
        if value is not None and value not in names:
            raise CaiError(f"{label} {value}: no such stage", hint=f"use one of: {', '.join(names)}")
    i = names.index(start) if start else 0
    j = names.index(stop) if stop else len(names) - 1
    if i > j:
        raise CaiError(f"--from {start} comes after --until {stop}",
                       hint=f"stage order: {' -> '.join(names)}")
    return names[i : j + 1]


def run_pipeline(
    stages: Sequence[Stage],
    ctx: RunContext,
    *,
    start: str | None = None,
    stop: str | None = None,
    force: Sequence[str] = (),
    on_event: Callable[[str, StageResult], None] | None = None,
) -> list[StageResult]:
    """Run the selected stages in order; skip unchanged ones; return one result per stage.

    A stage before ``start`` is not run but must have finished before (its
    outputs are loaded), since later stages read them.
    """
    chosen = set(select(stages, start, stop))
    results: list[StageResult] = []
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        _run_stages(stages, ctx, chosen, force, on_event, results)
    finally:  # servers the stages started (cai.run.engines) stop however the run ends
        engines = ctx.extra.pop("engines", None)
        if engines is not None:
            engines.close()
    return results


def _run_stages(stages: Sequence[Stage], ctx: RunContext, chosen: set[str], force: Sequence[str],
                on_event: Callable[[str, StageResult], None] | None, results: list[StageResult]) -> None:
    for stage in stages:
        missing = [d for d in stage.deps if d not in ctx.keys]
        if missing and stage.name in chosen:
            raise CaiError(f"stage {stage.name} needs {', '.join(missing)} first",
                           hint=f"run without --from, or with --from {missing[0]}")
        key = (make_id(stage.name, stage.fingerprint(ctx), [ctx.keys[d] for d in stage.deps])
               if not missing else None)
        sdir = ctx.dir(stage.name)
        state = read_state(sdir)
        done = state is not None and state.get("key") == key and state.get("status") == "complete"
        if stage.name not in chosen:
            if done:
                ctx.keys[stage.name], ctx.outputs[stage.name] = key, state.get("outputs", {})
            results.append(StageResult(stage.name, "not selected", key))
            continue
        if done and stage.name not in force:
            ctx.keys[stage.name], ctx.outputs[stage.name] = key, state.get("outputs", {})
            result = StageResult(stage.name, "skipped", key, state.get("seconds", 0.0),
                                 state.get("outputs", {}))
            results.append(result)
            if on_event:
                on_event("skip", result)
            continue
        _fresh_dir(sdir, state, key)
        if on_event:
            on_event("start", StageResult(stage.name, "running", key))
        t0 = time.perf_counter()
        outputs = stage.run(ctx)
        seconds = time.perf_counter() - t0
        write_state(sdir, {"stage": stage.name, "key": key, "status": "complete", "outputs": outputs,
                           "seconds": round(seconds, 1), "finished_at": utc_now()})
        ctx.keys[stage.name], ctx.outputs[stage.name] = key, outputs
        result = StageResult(stage.name, "ran", key, seconds, outputs)
        results.append(result)
        if on_event:
            on_event("done", result)


def plan(
    stages: Sequence[Stage],
    ctx: RunContext,
    *,
    start: str | None = None,
    stop: str | None = None,
    force: Sequence[str] = (),
) -> list[StageResult]:
    """What :func:`run_pipeline` would do, without running anything: one result per stage.

    Statuses: ``would skip`` (finished with the same key), ``would run``, ``not selected``
    (outside --from/--until), ``blocked`` (an unselected stage it needs never finished).
    A stage that would run gets its new key, so the stages after it are planned from that key.
    """
    chosen = set(select(stages, start, stop))
    out: list[StageResult] = []
    unknown: dict[str, str] = {}  # stage -> why its key cannot be known yet (a hub dataset not cached)
    for stage in stages:
        missing = [d for d in stage.deps if d not in ctx.keys and d not in unknown]
        why = next((f"key unknown: depends on {d}" for d in stage.deps if d in unknown), None)
        try:
            key = (make_id(stage.name, stage.fingerprint(ctx), [ctx.keys[d] for d in stage.deps])
                   if not missing and why is None else None)
        except SourceUnavailable as exc:
            key, why = None, f"key unknown until its data can be read: {exc.message}"
        if why is not None and not missing:
            unknown[stage.name] = why
            out.append(StageResult(stage.name, f"would run ({why})" if stage.name in chosen
                                   else "not selected"))
            continue
        state = read_state(ctx.dir(stage.name))
        done = state is not None and state.get("key") == key and state.get("status") == "complete"
        if stage.name not in chosen:
            out.append(StageResult(stage.name, "not selected", key))
            if done:
                ctx.keys[stage.name] = key
            continue
        status = "would skip" if done and stage.name not in force else "would run"
        if missing:
            status = f"blocked (needs {', '.join(missing)})"
        out.append(StageResult(stage.name, status, key, (state or {}).get("seconds", 0.0) if done else 0.0,
                               (state or {}).get("outputs", {}) if done else {}))
        if key is not None:
            ctx.keys[stage.name] = key
    return out


def ready_dir(stage_dir: Path, key: str) -> None:
    """Ready a stage's folder for ``key`` as a run does, for work done outside one (``cai.run.external``)."""
    _fresh_dir(stage_dir, read_state(stage_dir), key)


def _fresh_dir(sdir: Path, state: dict[str, Any] | None, key: str) -> None:
    """Keep the folder when it belongs to this key (resume); move another key's folder aside."""
    if sdir.exists():
        old_key = (state or {}).get("key") or _started_key(sdir)
        if old_key is not None and old_key != key:
            aside = sdir.with_name(f"{sdir.name}.{old_key}.old")
            log.info("%s: inputs changed; keeping the previous outputs in %s", sdir.name, aside)
            if aside.exists():
                raise CaiError(f"{aside} already exists", hint="remove it, or choose another run directory")
            os.replace(sdir, aside)
    sdir.mkdir(parents=True, exist_ok=True)
    (sdir / "stage.key").write_text(key, encoding="utf-8")


def _started_key(sdir: Path) -> str | None:
    try:
        return (sdir / "stage.key").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
