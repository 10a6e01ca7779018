"""Export records to a ``datasets.DatasetDict`` with TRL's column names.

Splits are ``train_sft``/``test_sft`` and ``train_prefs``/``test_prefs``; a record's
side depends only on a hash of its id and the seed (:func:`split_by_id`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from cai.core.errors import CaiError
from cai.core.jsonl import PathLike, read_records
from cai.core.records import Message, PreferenceRecord, make_id, to_chat

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

def _test_score(rid: str, seed: int) -> float:
    """Where an id falls in [0, 1), from a hash of ``(seed, id)``.

    >>> _test_score("abc", 0) == _test_score("abc", 0), _test_score("abc", 0) == _test_score("abc", 1)
    (True, False)
    >>> 0.0 <= _test_score("abc", 0) < 1.0
    True
    """
    digest = hashlib.sha256(f"{seed}:{rid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _record_id(record: Any) -> str:
    return record["id"] if isinstance(record, dict) else record.id


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 <= test_fraction <= 1.0:
        raise CaiError(f"test fraction {test_fraction} is not between 0 and 1", hint="use e.g. 0.1")


def split_by_id(records: Iterable[Any], test_fraction: float, seed: int = 0) -> tuple[list, list]:
    """Split records (models or dicts with an ``id``) into ``(train, test)`` by a hash of (seed, id).

    A record's side depends only on its id and the seed, never on input order,
    so a record stays on its side as the data grows.

    >>> recs = [{"id": str(i)} for i in range(1000)]
    >>> train, test = split_by_id(recs, 0.1)
    >>> len(train) + len(test), 60 < len(test) < 140
    (1000, True)
    >>> _, test_rev = split_by_id(recs[::-1], 0.1)
    >>> sorted(r["id"] for r in test_rev) == sorted(r["id"] for r in test)
    True
    >>> split_by_id(recs, 0.0)[1], len(split_by_id(recs, 1.0)[0])
    ([], 0)
    """
    _check_fraction(test_fraction)
    train: list = []
    test: list = []
    for r in records:
        (test if _test_score(_record_id(r), seed) < test_fraction else train).append(r)
    return train, test


class SFTRow(BaseModel):
    """A prompt/completion record in TRL's format; other keys are ignored.

    Plain strings become a user prompt / an assistant completion; a missing id
    is made from the content.

    >>> r = SFTRow.model_validate({"prompt": "q", "completion": "a", "extra": 1})
    >>> [m.role for m in r.prompt + r.completion], len(r.id)
    (['user', 'assistant'], 16)
    """

    model_config = ConfigDict(extra="ignore")
    id: str = ""
    prompt: list[Message]
    completion: list[Message]
    provenance: dict[str, Any] | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_str(cls, v: Any) -> Any:
        return [{"role": "user", "content": v}] if isinstance(v, str) else v

    @field_validator("completion", mode="before")
    @classmethod
    def _completion_str(cls, v: Any) -> Any:
        return [{"role": "assistant", "content": v}] if isinstance(v, str) else v

    @field_validator("prompt", "completion")
    @classmethod
    def _not_empty(cls, v: list[Message]) -> list[Message]:
        if not v:
            raise ValueError("has no messages")
        return v

    @model_validator(mode="after")
    def _fill_id(self) -> SFTRow:
        if not self.id:
            self.id = make_id(to_chat(self.prompt), to_chat(self.completion))
        return self


def _provenance_json(prov: BaseModel | dict | None) -> str:
    """Provenance as a JSON string column (``"null"`` when absent).

    >>> _provenance_json({"b": 1, "a": None}), _provenance_json(None)
    ('{"a": null, "b": 1}', 'null')
    """
    if isinstance(prov, BaseModel):
        prov = prov.model_dump(mode="json")
    return json.dumps(prov, sort_keys=True, ensure_ascii=False)


def _sft_row(r: SFTRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "prompt": to_chat(r.prompt),
        "completion": to_chat(r.completion),
        "provenance": _provenance_json(r.provenance),
    }


def _pref_row(r: PreferenceRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "prompt": to_chat(r.prompt),
        "chosen": to_chat(r.chosen),
        "rejected": to_chat(r.rejected),
        "p_chosen": float(r.p_chosen),
        "source": r.source,
        "weight": float(r.weight),
        "provenance": _provenance_json(r.provenance),
    }


def _read_all(paths: PathLike | Sequence[PathLike], model: type[T]) -> list[T]:
    """Records from one or more files, first occurrence of each id kept."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: dict[str, T] = {}
    dupes = 0
    for path in paths:
        records = read_records(path, model)
        if not records:
            raise CaiError(f"{path}: no records", hint="is this the right file?")
        for r in records:
            if r.id in out:
                dupes += 1
            else:
                out[r.id] = r
    if dupes:
        log.warning("skipped %d records whose id was already seen", dupes)
    return list(out.values())


def _table(rows: list[dict[str, Any]], features: datasets.Features) -> datasets.Dataset:
    """Rows as a Dataset with fixed features (column-wise, so an empty split keeps its schema)."""
    import datasets

    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features)


def to_dataset(
    sft: PathLike | Sequence[PathLike] | None = None,
    prefs: PathLike | Sequence[PathLike] | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> datasets.DatasetDict:
    """SFT and/or preference JSONL as a DatasetDict: ``train_sft``/``test_sft``,
    ``train_prefs``/``test_prefs``.

    Columns use TRL's names (messages are lists of ``{role, content}``) plus ``id``,
    ``provenance`` (a JSON string) and, for preferences, ``p_chosen``, ``source``, ``weight``.
    """
    import datasets

    _check_fraction(test_fraction)
    if sft is None and prefs is None:
        raise CaiError("nothing to export", hint="pass an SFT file, a preference file, or both")
    messages = [{"role": datasets.Value("string"), "content": datasets.Value("string")}]
    parts: dict[str, datasets.Dataset] = {}
    if sft is not None:
        features = datasets.Features(
            {
                "id": datasets.Value("string"),
                "prompt": messages,
                "completion": messages,
                "provenance": datasets.Value("string"),
            }
        )
        train, test = split_by_id([_sft_row(r) for r in _read_all(sft, SFTRow)], test_fraction, seed)
        parts["train_sft"], parts["test_sft"] = _table(train, features), _table(test, features)
    if prefs is not None:
        features = datasets.Features(
            {
                "id": datasets.Value("string"),
                "prompt": messages,
                "chosen": messages,
                "rejected": messages,
                "p_chosen": datasets.Value("float64"),
                "source": datasets.Value("string"),
                "weight": datasets.Value("float64"),
                "provenance": datasets.Value("string"),
            }
        )
        rows = [_pref_row(r) for r in _read_all(prefs, PreferenceRecord)]
        train, test = split_by_id(rows, test_fraction, seed)
        parts["train_prefs"], parts["test_prefs"] = _table(train, features), _table(test, features)
    return datasets.DatasetDict(parts)
