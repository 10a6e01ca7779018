"""Export records to a ``datasets.DatasetDict`` with TRL's column names.

Splits are ``train_sft``/``test_sft`` and ``train_prefs``/``test_prefs``; a record's
side depends only on a hash of its id and the seed (:func:`split_by_id`). Provenance
and the AI labeler's detail are struct columns. :mod:`cai.stages.export_files` writes
the result as parquet splits with a dataset card (``cai export``, hub staging).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import types
import typing
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from cai.core.errors import CaiError
from cai.core.jsonl import PathLike, read_records
from cai.core.records import LabelDetail, Message, PreferenceRecord, Provenance, make_id, to_chat

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


def model_features(model: type[BaseModel]) -> dict[str, Any]:
    """``datasets`` features of a pydantic model's fields (strings, numbers, lists, nested models).

    >>> from cai.core.records import ConstitutionRef
    >>> model_features(ConstitutionRef)["hash"]
    Value('string')
    >>> model_features(Provenance)["sampling"]["stop"]
    List(Value('string'))
    """
    return {name: _feature(field.annotation) for name, field in model.model_fields.items()}


def _feature(annotation: Any) -> Any:
    import datasets

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _feature(inner)
    if origin is typing.Annotated:
        return _feature(args[0])
    if origin is typing.Literal or annotation is str:
        return datasets.Value("string")
    if origin in (list, tuple) and (origin is list or args[-1] is Ellipsis or len(set(args)) == 1):
        return datasets.List(_feature(args[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_features(annotation)
    scalars = {bool: "bool", int: "int64", float: "float64"}
    if annotation in scalars:
        return datasets.Value(scalars[annotation])
    raise TypeError(f"no datasets feature for {annotation!r}")


def _plain_provenance(prov: BaseModel | dict | None) -> dict[str, Any] | None:
    """Provenance as a dict: cai's :class:`Provenance` checked and its given fields kept; others as they are.

    >>> _plain_provenance({"seed": "3", "model": "m"}), _plain_provenance({"tool": "x"})
    ({'model': 'm', 'seed': 3}, {'tool': 'x'})
    """
    if isinstance(prov, BaseModel):
        return prov.model_dump(mode="json")
    if not isinstance(prov, dict):
        return None
    try:
        return Provenance.model_validate(prov).model_dump(mode="json", exclude_unset=True)
    except ValueError:
        return prov  # another tool's provenance: kept as given (see provenance_feature)


def _fits(prov: dict[str, Any], features: dict[str, Any]) -> bool:
    """Whether every key of ``prov`` (nested dicts too) has a feature."""
    return all(k in features and (not isinstance(v, dict) or isinstance(features[k], dict)
                                  and _fits(v, features[k])) for k, v in prov.items())


def _has_empty_struct(t: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_struct(t):
        return t.num_fields == 0 or any(_has_empty_struct(t.field(i).type) for i in range(t.num_fields))
    return pa.types.is_list(t) and _has_empty_struct(t.value_type)


def provenance_feature(provs: Sequence[dict[str, Any] | None]) -> Any:
    """The ``provenance`` column's feature: a struct of cai's :class:`Provenance` fields when every row's
    fits (missing fields and absent provenance read as nulls), else the struct arrow infers from all rows;
    a JSON string only when the rows cannot share one struct (a field that is a number here, text there).

    >>> provenance_feature([None, {"model": "m"}])["constitution"]["hash"]
    Value('string')
    >>> provenance_feature([{"tool": "x"}, {"tool": "y", "n": 2}, None])
    {'tool': Value('string'), 'n': Value('int64')}
    >>> provenance_feature([{"n": 1}, {"n": "one"}])
    Value('string')
    """
    import datasets
    import pyarrow as pa
    from datasets.features.features import generate_from_arrow_type

    known = model_features(Provenance)
    given = [p for p in provs if p]
    if all(_fits(p, known) for p in given):
        return known
    try:
        inferred = pa.array(given).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        inferred = None
    if inferred is None or _has_empty_struct(inferred) or not pa.types.is_struct(inferred):
        log.warning("provenance: the rows' fields disagree in type; exported as JSON strings")
        return datasets.Value("string")
    return generate_from_arrow_type(inferred)


def _provenance_value(prov: dict[str, Any] | None, feature: Any) -> Any:
    """A ``provenance`` cell for a column of ``feature`` (JSON text when that is a string column).

    >>> _provenance_value({}, {"a": None}), _provenance_value({"a": 1}, "string")
    (None, '{"a": 1}')
    """
    if isinstance(feature, dict):
        return prov or None
    return json.dumps(prov, sort_keys=True, ensure_ascii=False)


def _sft_row(r: SFTRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "prompt": to_chat(r.prompt),
        "completion": to_chat(r.completion),
        "provenance": _plain_provenance(r.provenance),
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
        "ai_label": r.ai_label.model_dump(mode="json") if r.ai_label is not None else None,
        "provenance": _plain_provenance(r.provenance),
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

    Columns use TRL's names (messages are lists of ``{role, content}``) plus ``id`` and
    ``provenance`` (a struct, null where a record has none: :func:`provenance_feature`);
    preferences add ``p_chosen``, ``source``, ``weight`` and ``ai_label`` (the labeler's
    :class:`~cai.core.records.LabelDetail` struct, null for human pairs).
    """
    import datasets

    _check_fraction(test_fraction)
    if sft is None and prefs is None:
        raise CaiError("nothing to export", hint="pass an SFT file, a preference file, or both")
    sft_rows = [_sft_row(r) for r in _read_all(sft, SFTRow)] if sft is not None else []
    pref_rows = [_pref_row(r) for r in _read_all(prefs, PreferenceRecord)] if prefs is not None else []
    provenance = provenance_feature([r["provenance"] for r in sft_rows + pref_rows])
    for r in sft_rows + pref_rows:
        r["provenance"] = _provenance_value(r["provenance"], provenance)
    messages = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
    parts: dict[str, datasets.Dataset] = {}
    if sft is not None:
        features = datasets.Features({"id": datasets.Value("string"), "prompt": messages,
                                      "completion": messages, "provenance": provenance})
        train, test = split_by_id(sft_rows, test_fraction, seed)
        parts["train_sft"], parts["test_sft"] = _table(train, features), _table(test, features)
    if prefs is not None:
        features = datasets.Features({
            "id": datasets.Value("string"), "prompt": messages, "chosen": messages, "rejected": messages,
            "p_chosen": datasets.Value("float64"), "source": datasets.Value("string"),
            "weight": datasets.Value("float64"), "ai_label": model_features(LabelDetail),
            "provenance": provenance,
        })
        train, test = split_by_id(pref_rows, test_fraction, seed)
        parts["train_prefs"], parts["test_prefs"] = _table(train, features), _table(test, features)
    return datasets.DatasetDict(parts)
