"""Load a source's rows through ``datasets`` (``load_dataset`` / ``load_from_disk``), errors as one line.

``datasets`` is imported inside the functions, so ``cai --help`` stays instant.
Plain ``.jsonl`` files never come here: :mod:`cai.core.jsonl` reads them line by line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cai.core.errors import CaiError
from cai.sources.columns import check_columns, rename
from cai.sources.formats import PAIR_FIELDS, ShapeError, adapt_pair, adapt_prompt, pair_format, prompt_format
from cai.sources.spec import SYNTAX, Source, parse_source

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No 'Generating train split' bars nor ``datasets``' own log lines on the user's screen while a dataset
    loads."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    logger = logging.getLogger("datasets")  # its own error lines would repeat the one line we raise
    level = logger.level
    datasets.disable_progress_bars()
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
        if was:
            datasets.enable_progress_bars()


def _listed(msg: str) -> str:
    """The names a ``datasets`` error lists (``Available: ['a', 'b']``) as ``a, b``.

    >>> _listed("BuilderConfig 'x' not found. Available: ['a', 'b']")
    'a, b'
    """
    m = re.search(r"\[([^\]]*)\]", msg)
    return ", ".join(s.strip(" '\"") for s in m.group(1).split(",")) if m else "?"


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover
        return False


def _translate(src: Source, exc: Exception) -> CaiError:
    """A ``datasets``/``pyarrow`` exception about ``src`` as one line with the fix."""
    msg = " ".join(str(exc).split())
    if type(exc).__name__ == "EmptyDatasetError" and src.kind == "folder":
        return CaiError(f"{src.location}: is a directory without data files or a saved dataset in it",
                        hint="give a .jsonl/.csv/.parquet file, a save_to_disk folder, or a folder of data "
                             "files")
    if "BuilderConfig" in msg and "not found" in msg:
        return CaiError(f"{src.text}: no config {src.config or src.part!r} (configs: {_listed(msg)})",
                        hint=f"name one of them: {src.location}:CONFIG:SPLIT")
    if "Config name is missing" in msg:
        return CaiError(f"{src.text}: the dataset has several configs ({_listed(msg)})",
                        hint=f"name one: {src.location}:CONFIG[:SPLIT]")
    if "Unknown split" in msg or "Bad split" in msg:
        return CaiError(f"{src.text}: no split {src.split or src.part!r} (splits: {_listed(msg)})",
                        hint=f"name one of them: {src.location}:{src.config or ''}:SPLIT")
    if src.kind == "hub" and (isinstance(exc, (ConnectionError, FileNotFoundError)) or "on the Hub" in msg):
        where = ("offline (HF_HUB_OFFLINE=1) and not in the hub cache" if _offline()
                 else "not found on the hub")
        return CaiError(f"{src.text}: not a local file or folder, and {where}",
                        hint="check the path or id; to use a hub dataset offline, load it once online "
                             "(or unset HF_HUB_OFFLINE)")
    suffix = Path(src.location).suffix.lower()
    if suffix == ".parquet" or type(exc).__module__.startswith("pyarrow"):
        what = "parquet" if suffix == ".parquet" else suffix.lstrip(".") or "data"
        return CaiError(f"{src.location}: not a readable {what} file: {msg[:160]}",
                        hint="check the file, or give it the suffix of what it holds (.csv, .json, .jsonl)")
    return CaiError(f"{src.text}: cannot load it: {type(exc).__name__}: {msg[:200]}",
                    hint=f"check the source ({SYNTAX})")


def _pick_split(src: Source, dd: Any, split: str | None) -> datasets.Dataset:
    """One split of a DatasetDict: the named one, the only one, or ``train``."""
    names = list(dd.keys())
    if split is None:
        if len(names) == 1:
            return dd[names[0]]
        if "train" in names:
            log.info("%s: reading its train split (splits: %s)", src.text, ", ".join(names))
            return dd["train"]
        raise CaiError(f"{src.text}: the dataset has several splits ({', '.join(names)})",
                       hint=f"name one: {src.location}:{src.config or ''}:SPLIT")
    if split not in dd:
        raise CaiError(f"{src.text}: no split {split!r} (splits: {', '.join(names)})",
                       hint=f"name one of them: {src.location}:{src.config or ''}:SPLIT")
    return dd[split]


def _load_repo(src: Source) -> datasets.Dataset:
    """A local dataset repo folder or a hub id, through ``load_dataset`` (config and split resolved)."""
    import datasets

    kwargs: dict[str, Any] = {}
    if src.kind == "folder":  # local files change in place: never serve a stale cache of them
        kwargs.update(download_mode="force_redownload", verification_mode="no_checks")
    config, split = src.config, src.split
    if src.part is not None:
        try:
            configs = datasets.get_dataset_config_names(src.location)
        except Exception as exc:  # noqa: BLE001 - any failure here is the source's, reported as one line
            raise _translate(src, exc) from None
        config, split = (src.part, None) if src.part in configs else (None, src.part)
        if split is not None and len(configs) > 1:
            raise CaiError(f"{src.text}: {src.part!r} is not a config (configs: {', '.join(configs)})",
                           hint=f"name a config and a split: {src.location}:CONFIG:{src.part}")
    resolved = Source(src.text, src.location, src.kind, config, split)
    try:
        loaded = datasets.load_dataset(src.location, config, split=split, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise _translate(resolved, exc) from None
    return loaded if split is not None else _pick_split(resolved, loaded, None)


def load_source(src: Source) -> datasets.Dataset:
    """The rows of a non-JSONL source as one ``datasets.Dataset``."""
    import datasets

    path = Path(src.location).expanduser()
    with _quiet():
        if src.kind == "file":
            if not path.is_file():
                raise CaiError(f"{src.location}: no such file", hint="check the path")
            if src.config or src.split or src.part:
                raise CaiError(f"{src.text}: a single file has no config or split",
                               hint=f"drop the ':' parts after {src.location}")
            from cai.sources.spec import FILE_BUILDERS

            suffix = path.suffix.lower()
            extra = {"delimiter": "\t"} if suffix == ".tsv" else {}
            try:
                return datasets.load_dataset(FILE_BUILDERS[suffix], data_files=str(path), split="train",
                                             **extra)
            except Exception as exc:  # noqa: BLE001
                raise _translate(src, exc) from None
        if src.kind == "disk":
            try:
                loaded = datasets.load_from_disk(str(path))
            except Exception as exc:  # noqa: BLE001
                raise _translate(src, exc) from None
            if isinstance(loaded, datasets.Dataset):
                if src.split or src.part or src.config:
                    raise CaiError(f"{src.text}: a saved Dataset has no config or split",
                                   hint=f"drop the ':' parts after {src.location}")
                return loaded
            return _pick_split(src, loaded, src.split or src.part)
        if src.kind in ("folder", "hub"):
            return _load_repo(src)
    raise CaiError(f"{src.text}: not a dataset source", hint=f"write {SYNTAX}")


def source_rows(source: str | Source, kind: str, known: frozenset[str] | None = None
                ) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` for each row of a non-JSONL source, renamed and adapted to ``kind`` (prompt, pair or
    other), ``where`` being ``source:row N`` (rows count from 1)."""
    src = source if isinstance(source, Source) else parse_source(source)
    ds = load_source(src)
    check_columns(src.columns, list(ds.column_names), src.text)
    for n, row in enumerate(ds, start=1):
        where = f"{src.text}:row {n}"
        row = rename(row, src.columns)
        if n == 1:
            log.info("%s: %d row(s), read as %s", src.text, len(ds), describe(row, kind))
        yield where, adapt_row(row, kind, where, src.text, known, keep_extra=True)


_PROMPT_NAMES = {"prompt": "prompt rows", "goal": "AdvBench goal/target rows",
                 "Behavior": "HarmBench behaviours",
                 "question": "question rows (Do-Not-Answer style)", "hh-rlhf": "hh-rlhf transcripts"}


def describe(row: dict[str, Any], kind: str) -> str:
    """What format a row is read as (for the log).

    >>> describe({"goal": "g", "target": "t"}, "prompt"), describe({"prompt": "q", "chosen": "a",
    ...     "rejected": "b"}, "pair")
    ('AdvBench goal/target rows', 'native pairs')
    """
    if kind == "pair":
        return f"{pair_format(row)} pairs"
    if kind == "prompt":
        return _PROMPT_NAMES.get(prompt_format(row) or "", "unknown rows")
    return "records"


def adapt_row(row: dict[str, Any], kind: str, where: str, source: str, known: frozenset[str] | None = None,
              keep_extra: bool = False) -> dict[str, Any]:
    """One row through its format adapter (``kind`` prompt or pair; other kinds pass); an error names
    ``where`` and, for an unknown shape, the mapping that fixes it."""
    try:
        if kind == "prompt":
            return adapt_prompt(row, keep_extra)
        if kind == "pair":
            return adapt_pair(row, known or PAIR_FIELDS, keep_extra)
        return row
    except ShapeError as exc:
        base = source.rpartition("#")[0] if "#" in source else source
        raise CaiError(f"{where}: {exc.message}", hint=f"map the columns: {base}#{exc.mapping}") from None
    except CaiError as exc:
        raise CaiError(f"{where}: {exc.message}", hint=exc.hint) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # an adapter met odd input
        raise CaiError(f"{where}: (record): {type(exc).__name__}: {exc}", hint="correct this row") from None


def first_row(source: str) -> dict[str, Any] | None:
    """The first row of a non-JSONL source as loaded (column mapping applied), ``None`` when it has none."""
    src = parse_source(source)
    ds = load_source(src)
    check_columns(src.columns, list(ds.column_names), src.text)
    return rename(ds[0], src.columns) if len(ds) else None


def source_digest(source: str, local_digest: Callable[[str], str]) -> str:
    """A stable digest of what a source reads: ``local_digest`` of a local location's files, or the
    ``datasets`` fingerprint of a hub dataset's cached files, plus the config, split and mapping."""
    src = parse_source(source)
    if src.kind == "hub":
        with _quiet():
            content = load_source(src)._fingerprint
    else:
        content = local_digest(src.location)
    blob = json.dumps([content, src.config, src.split, src.part, src.columns], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
