"""Source strings: where records come from, parsed without loading anything.

A source is written ``LOCATION[:CONFIG[:SPLIT]][#TARGET=COLUMN,...]``:

* ``LOCATION`` is a ``.jsonl`` file (read by :mod:`cai.core.jsonl`, line by line),
  a ``.json``/``.csv``/``.tsv``/``.parquet``/``.arrow`` file, a ``save_to_disk``
  folder, a local dataset repo folder (data files, optionally a README with
  ``configs:``), or a hub dataset id (``org/name``), read from the hub cache;
* ``:CONFIG:SPLIT`` picks a config and a split (``Anthropic/hh-rlhf:harmless-base:test``);
  one part alone (``LOC:test``) is a config if the dataset has one of that name,
  else a split; ``LOC::test`` is the split of the default config. Without a split
  a dataset's only split, or else its ``train`` split, is read;
* ``#prompt=question,chosen=good`` renames columns before the rows are read
  (``TARGET=COLUMN``: the record field ``TARGET`` comes from column ``COLUMN``).

A string that names an existing path is that path, whatever it contains.

>>> s = parse_source("Anthropic/hh-rlhf:harmless-base:test#prompt=q")
>>> s.kind, s.location, s.config, s.split, s.columns
('hub', 'Anthropic/hh-rlhf', 'harmless-base', 'test', (('prompt', 'q'),))
>>> parse_source("data/prompts.jsonl").kind
'jsonl'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cai.core.errors import CaiError

FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".json": "json", ".arrow": "arrow"}
DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_NAME = re.compile(r"^[\w.-]+$")
SYNTAX = "LOCATION[:CONFIG[:SPLIT]][#TARGET=COLUMN,...]"


@dataclass(frozen=True)
class Source:
    """A parsed source string; ``kind`` is jsonl, file, disk (save_to_disk), folder (local repo) or hub."""

    text: str
    location: str
    kind: str
    config: str | None = None
    split: str | None = None
    part: str | None = None  # one ':' part: a config if the dataset has it, else a split
    columns: tuple[tuple[str, str], ...] = ()

    @property
    def is_plain_jsonl(self) -> bool:
        """A JSONL file read as it is (no mapping): today's reader, byte for byte."""
        return self.kind == "jsonl" and not self.columns

    def mapping_text(self) -> str:
        """The column mapping as written after ``#``.

        >>> parse_source("x.csv#prompt=q,id=n").mapping_text()
        'prompt=q,id=n'
        """
        return ",".join(f"{t}={c}" for t, c in self.columns)


def parse_columns(text: str, where: str = "columns") -> tuple[tuple[str, str], ...]:
    """``TARGET=COLUMN,...`` as pairs; a bad item is one line.

    >>> parse_columns("prompt=question, chosen=good")
    (('prompt', 'question'), ('chosen', 'good'))
    >>> parse_columns("prompt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cai.core.errors.CaiError: columns: 'prompt' is not TARGET=COLUMN (fix: write e.g. prompt=question,...)
    """
    pairs: list[tuple[str, str]] = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        target, sep, column = (p.strip() for p in item.partition("="))
        if not sep or not target or not column:
            raise CaiError(f"{where}: {item!r} is not TARGET=COLUMN",
                           hint="write e.g. prompt=question,chosen=good")
        if target in dict(pairs):
            raise CaiError(f"{where}: {target!r} is mapped twice", hint="map each field once")
        pairs.append((target, column))
    return tuple(pairs)


def with_columns(source: str | os.PathLike, columns: str | None) -> str:
    """A source string with a ``--columns`` mapping attached (after its own).

    >>> with_columns("q.csv", "prompt=question"), with_columns("q.csv#id=n", "prompt=q")
    ('q.csv#prompt=question', 'q.csv#id=n,prompt=q')
    >>> with_columns("a", None)
    'a'
    """
    text = os.fspath(source)
    if not columns:
        return text
    return f"{text},{columns}" if "#" in text and not Path(text).exists() else f"{text}#{columns}"


def _kind(location: str) -> str:
    p = Path(location).expanduser()
    if p.is_dir():
        return "disk" if any((p / m).is_file() for m in DISK_MARKERS) else "folder"
    suffix = p.suffix.lower()
    if suffix in FILE_BUILDERS:
        return "file"
    if p.exists() or suffix == ".jsonl" or location.startswith((".", "/", "~")) \
            or not _HUB_ID.match(location):
        return "jsonl"  # a missing path keeps the JSONL reader's 'no such file'
    return "hub"


def _split_parts(loc: str) -> tuple[str, list[str]]:
    """``(location, [config/split parts])``: the longest ':'-prefix that exists is the location."""
    parts = loc.split(":")
    for i in range(len(parts), 0, -1):
        head = ":".join(parts[:i])
        if Path(head).expanduser().exists():
            return head, parts[i:]
    return parts[0], parts[1:]


def parse_source(text: str | os.PathLike) -> Source:
    """Parse a source string (see the module doc); bad syntax is one line.

    >>> parse_source("org/set:test").part, parse_source("org/set::test").split
    ('test', 'test')
    >>> parse_source("q.csv#prompt=question").columns
    (('prompt', 'question'),)
    >>> parse_source("org/set:a:b:c")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cai.core.errors.CaiError: org/set:a:b:c: too many ':' parts (fix: write LOCATION[:CONFIG[:SPLIT]]...
    """
    raw = os.fspath(text)
    if Path(raw).expanduser().exists():
        return Source(raw, raw, _kind(raw))
    loc, sep, mapping = raw.rpartition("#") if "#" in raw else (raw, "", "")
    columns = parse_columns(mapping, f"{raw}: columns") if sep else ()
    location, parts = _split_parts(loc)
    if len(parts) > 2:
        raise CaiError(f"{raw}: too many ':' parts", hint=f"write {SYNTAX}")
    for p in parts:
        if p and not _NAME.match(p):
            raise CaiError(f"{raw}: {p!r} is not a config or split name", hint=f"write {SYNTAX}")
    kind = _kind(location)
    if kind == "jsonl" and parts:
        raise CaiError(f"{raw}: a JSONL file has no config or split",
                       hint=f"drop ':{':'.join(parts)}'")
    if len(parts) == 1:
        return Source(raw, location, kind, part=parts[0] or None, columns=columns)
    config, split = (parts + ["", ""])[:2]
    return Source(raw, location, kind, config=config or None, split=split or None, columns=columns)


def resolve_source(text: str, base: str | os.PathLike | None) -> str:
    """A recipe's source made relative to the recipe's folder ``base``; hub ids and absolute paths stay.

    >>> resolve_source("p.csv#prompt=q", "/r"), resolve_source("org/set:test", "/r")
    ('/r/p.csv#prompt=q', 'org/set:test')
    >>> resolve_source("/a.jsonl", "/r")
    '/a.jsonl'
    """
    if base is None or Path(text).is_absolute():
        return text
    here = Path(base) / text
    if here.exists():
        return str(here)
    loc = text.rpartition("#")[0] if "#" in text else text
    head = loc.split(":")[0]
    rest = text[len(head):]
    local = (Path(base) / head).exists() or Path(head).suffix.lower() in (*FILE_BUILDERS, ".jsonl") \
        or head.startswith(".") or not _HUB_ID.match(head)
    return str(Path(base) / head) + rest if local else text
