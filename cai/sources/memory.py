"""Records from what a Python caller holds: a list of dicts or records, a ``datasets.Dataset``, or a source.

:func:`as_records` is how the library API (``from cai import ...``) takes in-memory data: each row goes
through the same format adapters and validation as a file's rows, and a bad row names ``<data>:row N``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

from cai.core.errors import CaiError
from cai.core.jsonl import adapter_kind, read_records, validate_record
from cai.sources.load import adapt_row

T = TypeVar("T", bound=BaseModel)


def as_records(data: Any, model: type[T], name: str = "<data>") -> list[T]:
    """``data`` as validated ``model`` records.

    ``data`` is a source string or path (read by :func:`cai.core.jsonl.read_records`), or rows: records
    of ``model`` (kept as they are), dicts in any shape the readers take (native, hh-rlhf transcripts,
    UltraFeedback, PKU-SafeRLHF, AdvBench...), or a ``datasets.Dataset`` of such rows.

    >>> from cai.core.records import PromptRecord, PreferenceRecord
    >>> [r.prompt for r in as_records([{"prompt": "Hi"}, {"goal": "Do x", "target": "Sure"}], PromptRecord)]
    ['Hi', 'Do x']
    >>> p = as_records([{"chosen": "\\n\\nHuman: q\\n\\nAssistant: good",
    ...                  "rejected": "\\n\\nHuman: q\\n\\nAssistant: bad"}], PreferenceRecord)[0]
    >>> p.prompt[0].content, p.chosen[-1].content
    ('q', 'good')
    >>> as_records([{"text": "x"}], PromptRecord)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: <data>:row 1: ...
    """
    if isinstance(data, (str, os.PathLike)):
        return read_records(data, model)
    if isinstance(data, BaseModel) or isinstance(data, dict) or not isinstance(data, Iterable):
        raise CaiError(f"{name}: expected rows (a list of dicts or records, or a datasets.Dataset), "
                       f"got {type(data).__name__}", hint="wrap a single row in a list")
    kind, known = adapter_kind(model), frozenset(model.model_fields)
    out: list[T] = []
    for n, row in enumerate(data, start=1):
        where = f"{name}:row {n}"
        if isinstance(row, model):
            out.append(row)
            continue
        if isinstance(row, BaseModel):
            row = row.model_dump()
        if not isinstance(row, dict):
            raise CaiError(f"{where}: expected a dict or a {model.__name__}, got {type(row).__name__}",
                           hint="give each row as a dict")
        out.append(validate_record(adapt_row(dict(row), kind, where, name, known, keep_extra=True), model,
                                   where))
    return out
