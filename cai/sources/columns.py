"""Column mapping: rename a source's columns to the record's field names before a row is read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cai.core.errors import CaiError


def check_columns(mapping: Sequence[tuple[str, str]], columns: Sequence[str], where: str) -> None:
    """Every mapped column must exist; a missing one is one line naming the columns there are.

    >>> check_columns((("prompt", "question"),), ["question", "id"], "q.csv")
    >>> check_columns((("prompt", "questoin"),), ["question", "id"], "q.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cai.core.errors.CaiError: q.csv: column mapping prompt=questoin: no column 'questoin' (columns: ...
    """
    missing = [(t, c) for t, c in mapping if c not in columns]
    if missing:
        t, c = missing[0]
        used = {c for _, c in mapping}
        example = next((col for col in columns if col not in used), columns[0] if columns else "")
        raise CaiError(f"{where}: column mapping {t}={c}: no column {c!r} (columns: {', '.join(columns)})",
                       hint=f"map one of the columns there are, e.g. {t}={example}")


def rename(row: dict[str, Any], mapping: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The row with each mapped column renamed to its target (a target already there is replaced).

    >>> rename({"question": "q", "prompt": "old", "id": 1}, (("prompt", "question"),))
    {'id': 1, 'prompt': 'q'}
    >>> rename({"a": 1, "b": 2}, (("b", "a"), ("a", "b")))  # a swap
    {'b': 1, 'a': 2}
    """
    if not mapping:
        return row
    sources = {c for _, c in mapping}
    targets = {t for t, _ in mapping}
    out = {k: v for k, v in row.items() if k not in sources and k not in targets}
    for target, column in mapping:
        if column in row:
            out[target] = row[column]
    return out
