"""Loading a constitution: find the file, read it with the safe loader, resolve its layers, validate."""

from __future__ import annotations

from pathlib import Path

from cai.constitution.layers import resolve_constitution
from cai.constitution.paths import display_path, find_constitution
from cai.constitution.schema import Constitution
from cai.core.yaml_lines import decode_utf8, read_source


def loads_constitution(
    data: str | bytes, source: str = "<string>", base_dir: Path | None = None
) -> Constitution:
    """Resolve a constitution from YAML text; ``extends`` resolve from ``base_dir``, then the shipped ones.

    >>> c = loads_constitution("name: t\\nversion: '1'\\nprinciples:\\n- {id: a, critique: c, revision: r}")
    >>> c.ref().name, len(c.hash)
    ('t', 64)
    >>> loads_constitution("name: t\\nversion: 1.0\\nprinciples: []")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: <string>:2: version: must be a string: quote it, e.g. version: "1.0" (fix:
    correct 'version')
    """
    text = decode_utf8(data, source) if isinstance(data, bytes) else data
    return resolve_constitution(text, source, base_dir, [])


def load_constitution(path_or_name: str | Path) -> Constitution:
    """Load, layer and validate a constitution file (or a shipped one by name)."""
    path = find_constitution(path_or_name)
    source = str(path_or_name) if Path(path_or_name) == path else display_path(path)
    return resolve_constitution(read_source(path, source), source, path.parent, [path.resolve()])
