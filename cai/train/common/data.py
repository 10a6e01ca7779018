"""cai's JSONL records as ``datasets.Dataset`` in TRL's conversational formats.

Reading goes through :mod:`cai.stages.export` (strict readers, ``file:line`` errors,
first occurrence of each id kept) and the train/eval split through
:func:`cai.stages.export.split_by_id`, so a record's side never depends on file order.

* SFT: ``prompt``/``completion`` message lists (TRL's prompt-completion format:
  the loss falls on the completion only).
* Preferences: ``prompt``/``chosen``/``rejected`` plus ``p_chosen`` (soft label)
  and ``weight`` (per-pair weight) for the soft-label losses.
* Prompts (RLOO/GRPO): ``prompt`` message lists, from prompt files or from the
  prompts of SFT/preference records.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cai.core.errors import CaiError
from cai.core.jsonl import PathLike, read_prompts
from cai.core.records import make_id, to_chat

if TYPE_CHECKING:
    import datasets

SFT_COLUMNS = ("id", "prompt", "completion")
PREFERENCE_COLUMNS = ("id", "prompt", "chosen", "rejected", "p_chosen", "weight")


def as_paths(paths: PathLike | Sequence[PathLike]) -> list[str]:
    """One path or several as a list of strings.

    >>> as_paths("a.jsonl"), as_paths(["a.jsonl", "b.jsonl"])
    (['a.jsonl'], ['a.jsonl', 'b.jsonl'])
    """
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def _keep(ds: datasets.Dataset, columns: Sequence[str]) -> datasets.Dataset:
    return ds.remove_columns([c for c in ds.column_names if c not in columns])


def _split_datasets(kind: str, paths: PathLike | Sequence[PathLike], eval_fraction: float,
                    seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """``(train, eval)`` of one record kind (``sft`` or ``prefs``), with that kind's columns only."""
    from cai.stages.export import to_dataset

    files = as_paths(paths)
    dd = to_dataset(**{kind: files}, test_fraction=eval_fraction, seed=seed)
    columns = SFT_COLUMNS if kind == "sft" else PREFERENCE_COLUMNS
    train, test = _keep(dd[f"train_{kind}"], columns), _keep(dd[f"test_{kind}"], columns)
    if len(train) == 0:
        what = "records" if kind == "sft" else "pairs"
        raise CaiError(f"{', '.join(files)}: no training {what} left after holding out {eval_fraction:.0%}",
                       hint=f"add {what} or lower the eval fraction")
    return train, test


def sft_datasets(paths: PathLike | Sequence[PathLike], eval_fraction: float = 0.0,
                 seed: int = 0) -> tuple[datasets.Dataset, datasets.Dataset]:
    """``(train, eval)`` prompt/completion datasets from SFT (completion) records."""
    return _split_datasets("sft", paths, eval_fraction, seed)


def preference_datasets(paths: PathLike | Sequence[PathLike], eval_fraction: float = 0.0,
                        seed: int = 0) -> tuple[datasets.Dataset, datasets.Dataset]:
    """``(train, eval)`` preference datasets with ``p_chosen`` and ``weight`` columns."""
    return _split_datasets("prefs", paths, eval_fraction, seed)


def prompt_dataset(paths: PathLike | Sequence[PathLike]) -> datasets.Dataset:
    """A ``prompt`` column of message lists (each ending with a user turn), one row per distinct prompt.

    Reads prompt files (``{"prompt": str | [messages]}``) and equally the prompts
    of SFT or preference records (their other keys are ignored).
    """
    import datasets

    seen: dict[str, list[dict[str, str]]] = {}
    for path in as_paths(paths):
        for rec in read_prompts(path):
            chat = to_chat(rec.messages())
            seen.setdefault(make_id(chat), chat)
    messages = [{"role": datasets.Value("string"), "content": datasets.Value("string")}]
    features = datasets.Features({"id": datasets.Value("string"), "prompt": messages})
    return datasets.Dataset.from_dict({"id": list(seen), "prompt": list(seen.values())}, features=features)
