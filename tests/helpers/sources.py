"""Local stand-ins for hub datasets: a dataset repo folder laid out like one on the hub (README ``configs:``,
parquet shards), and a private ``datasets`` cache so tests never touch the user's."""

from __future__ import annotations

from pathlib import Path

import pytest

README = """---
configs:
- config_name: harmless-base
  data_files:
  - split: train
    path: data/harmless-base/train-*.parquet
  - split: test
    path: data/harmless-base/test-*.parquet
- config_name: helpful-base
  data_files:
  - split: train
    path: data/helpful-base/train-*.parquet
---
# A local stand-in for Anthropic/hh-rlhf
"""


def transcript(question: str, answer: str) -> str:
    return f"\n\nHuman: {question}\n\nAssistant: {answer}"


def hh_rows(n: int, tag: str) -> list[dict[str, str]]:
    """hh-rlhf rows as published: two raw transcripts sharing the human turn."""
    return [{"chosen": transcript(f"{tag} question {i}?", f"I won't help with that ({i})."),
             "rejected": transcript(f"{tag} question {i}?", f"Sure, here is how ({i}).")} for i in range(n)]


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def hub_like_folder(root: Path) -> Path:
    """``root`` as a hub dataset repo: configs harmless-base (train 4, test 3) and helpful-base (train 2)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(README, encoding="utf-8")
    write_parquet(root / "data/harmless-base/train-00000-of-00001.parquet", hh_rows(4, "train"))
    write_parquet(root / "data/harmless-base/test-00000-of-00001.parquet", hh_rows(3, "test"))
    write_parquet(root / "data/helpful-base/train-00000-of-00001.parquet", hh_rows(2, "helpful"))
    return root


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch) -> Path:
    """A fresh ``datasets`` cache for this test (and for subprocesses via HF_DATASETS_CACHE)."""
    import datasets

    cache = tmp_path / "hf-datasets-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache
