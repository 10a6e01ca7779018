"""cai.stages.export.to_dataset and `cai export`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cai.cli import app
from cai.core.errors import CaiError
from cai.core.records import CompletionRecord, Message, PreferenceRecord, Provenance, make_id
from cai.stages.export import SFTRow, to_dataset

SFT_COLUMNS = ["id", "prompt", "completion", "provenance"]
PREF_COLUMNS = ["id", "prompt", "chosen", "rejected", "p_chosen", "source", "weight", "ai_label",
                "provenance"]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _sft_rows(n: int) -> list[dict]:
    """Rows shaped like the critique/revision stage's sft.jsonl: TRL prompt/completion + id + provenance."""
    return [
        {
            "id": f"s{i}",
            "prompt": _user(f"question {i}"),
            "completion": _assistant(f"revised answer {i}"),
            "provenance": {"model": "tiny", "principle_ids": ["harmless"], "seed": i},
            "prompt_id": f"p{i}",
            "critiques": ["too blunt"],
        }
        for i in range(n)
    ]


def _pref_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        rec = PreferenceRecord(
            prompt=_user(f"q{i}"),
            chosen=_assistant(f"good {i}"),
            rejected=_assistant(f"bad {i}"),
            p_chosen=0.75,
            source="ai",
            provenance=Provenance(model="tiny", seed=i) if i % 2 else None,
        )
        rows.append(json.loads(rec.model_dump_json()))
    return rows


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _split_ids(dd) -> dict[str, set[str]]:
    return {name: set(split["id"]) for name, split in dd.items()}


def test_to_dataset_splits_and_columns(tmp_path):
    sft = _jsonl(tmp_path / "sft.jsonl", _sft_rows(60))
    prefs = _jsonl(tmp_path / "prefs.jsonl", _pref_rows(40))
    dd = to_dataset(sft=sft, prefs=prefs, test_fraction=0.25, seed=1)
    assert set(dd) == {"train_sft", "test_sft", "train_prefs", "test_prefs"}
    for name in ("train_sft", "test_sft"):
        assert dd[name].column_names == SFT_COLUMNS
    for name in ("train_prefs", "test_prefs"):
        assert dd[name].column_names == PREF_COLUMNS
    assert dd["train_sft"].num_rows + dd["test_sft"].num_rows == 60
    assert dd["train_prefs"].num_rows + dd["test_prefs"].num_rows == 40
    assert dd["test_sft"].num_rows > 0 and dd["test_prefs"].num_rows > 0

    row = next(r for r in dd["train_sft"].to_list() + dd["test_sft"].to_list() if r["id"] == "s3")
    assert row["prompt"] == _user("question 3") and row["completion"] == _assistant("revised answer 3")
    assert row["provenance"]["principle_ids"] == ["harmless"] and row["provenance"]["seed"] == 3
    assert row["provenance"]["constitution"] is None  # a struct: fields the record lacks are null

    prefs_rows = dd["train_prefs"].to_list() + dd["test_prefs"].to_list()
    assert {r["source"] for r in prefs_rows} == {"ai"} and {r["p_chosen"] for r in prefs_rows} == {0.75}
    provs = [r["provenance"] for r in prefs_rows]  # mixed: some rows have none
    assert None in provs and any(p and p["model"] == "tiny" for p in provs)
    assert isinstance(dd["train_prefs"].features["provenance"], dict)
    assert dd["train_prefs"].features["provenance"] == dd["train_sft"].features["provenance"]


def test_same_ids_same_split_regardless_of_order(tmp_path):
    rows = _sft_rows(80)
    forward = to_dataset(sft=_jsonl(tmp_path / "a.jsonl", rows), test_fraction=0.3, seed=7)
    backward = to_dataset(sft=_jsonl(tmp_path / "b.jsonl", rows[::-1]), test_fraction=0.3, seed=7)
    assert set(forward) == {"train_sft", "test_sft"}
    assert _split_ids(forward) == _split_ids(backward)
    grown = to_dataset(
        sft=_jsonl(tmp_path / "c.jsonl", rows + _sft_rows(120)[80:]), test_fraction=0.3, seed=7
    )
    assert _split_ids(forward)["test_sft"] <= _split_ids(grown)["test_sft"]


def test_empty_test_split_keeps_schema(tmp_path):
    dd = to_dataset(prefs=_jsonl(tmp_path / "p.jsonl", _pref_rows(5)), test_fraction=0.0)
    assert dd["test_prefs"].num_rows == 0 and dd["test_prefs"].column_names == PREF_COLUMNS


def test_sft_accepts_strings_completion_records_and_missing_ids(tmp_path):
    rec = CompletionRecord(
        id="c1",
        prompt_id="p1",
        prompt=[Message(role="user", content="hi")],
        completion=[Message(role="assistant", content="hello")],
        finish_reason="stop",
        provenance=Provenance(model="tiny"),
    )
    rows = [json.loads(rec.model_dump_json()), {"prompt": "plain q", "completion": "plain a"}]
    dd = to_dataset(sft=[_jsonl(tmp_path / "s.jsonl", rows)], test_fraction=0.0)
    got = {r["id"]: r for r in dd["train_sft"].to_list()}
    plain_id = make_id(_user("plain q"), _assistant("plain a"))
    assert set(got) == {"c1", plain_id}
    assert got[plain_id]["completion"] == _assistant("plain a") and got[plain_id]["provenance"] is None
    assert SFTRow.model_validate(rows[1]).id == plain_id


def test_duplicate_ids_across_files_kept_once(tmp_path):
    rows = _sft_rows(10)
    a, b = _jsonl(tmp_path / "a.jsonl", rows), _jsonl(tmp_path / "b.jsonl", rows[5:])
    dd = to_dataset(sft=[a, b], test_fraction=0.0)
    assert dd["train_sft"].num_rows == 10


def test_to_dataset_errors(tmp_path):
    with pytest.raises(CaiError, match="nothing to export"):
        to_dataset()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "completion": "a"}\n{"prompt": "q"}\n')
    with pytest.raises(CaiError, match=r"bad\.jsonl:2: completion: Field required"):
        to_dataset(sft=bad)
    with pytest.raises(CaiError, match=r"empty\.jsonl: no records"):
        to_dataset(prefs=_jsonl(tmp_path / "empty.jsonl", []))


def test_to_dataset_on_shared_pairs(shared_data):
    path = shared_data / "hh_harmless_pairs_dev.jsonl"
    dd = to_dataset(prefs=path, test_fraction=0.1)
    ids = {PreferenceRecord.model_validate_json(line).id for line in path.read_text().splitlines()}
    assert dd["train_prefs"].num_rows + dd["test_prefs"].num_rows == len(ids)
    assert 0.05 < dd["test_prefs"].num_rows / len(ids) < 0.15


def test_cli_export(tmp_path):
    import datasets

    sft = _jsonl(tmp_path / "sft.jsonl", _sft_rows(30))
    prefs = _jsonl(tmp_path / "prefs.jsonl", _pref_rows(30))
    out = tmp_path / "ds"
    args = ["export", "--sft", str(sft), "--prefs", str(prefs), "-o", str(out), "--test-fraction", "0.2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "train_sft:" in result.output and "test_prefs:" in result.output and str(out) in result.output
    loaded = datasets.load_dataset(str(out.resolve()))
    assert list(loaded) == ["train_sft", "test_sft", "train_prefs", "test_prefs"]
    assert loaded["train_sft"].num_rows + loaded["test_sft"].num_rows == 30
    assert loaded["train_prefs"].num_rows + loaded["test_prefs"].num_rows == 30
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(
        f"{s}-00000-of-00001.parquet" for s in loaded)

    again = CliRunner().invoke(app, [*args, "--seed", "1"])  # an earlier export may be replaced
    assert again.exit_code == 0, again.output


def test_cli_export_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["export", "-o", str(tmp_path / "ds")])
    assert isinstance(result.exception, CaiError) and "nothing to export" in str(result.exception)

    missing = runner.invoke(
        app, ["export", "--sft", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "ds")]
    )
    assert isinstance(missing.exception, CaiError) and "nope.jsonl: no such file" in str(missing.exception)

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    sft = _jsonl(tmp_path / "sft.jsonl", _sft_rows(3))
    refused = runner.invoke(app, ["export", "--sft", str(sft), "-o", str(busy)])
    assert isinstance(refused.exception, CaiError) and "not empty" in str(refused.exception)
    assert (busy / "keep.txt").read_text() == "mine"


def test_cli_help_lists_options():
    result = CliRunner().invoke(app, ["export", "--help"])
    assert result.exit_code == 0
    for opt in ("--sft", "--prefs", "--output", "--test-fraction", "--seed"):
        assert opt in result.output


def test_cli_export_replaces_an_old_save_to_disk_export(tmp_path):
    import datasets

    sft = _jsonl(tmp_path / "sft.jsonl", _sft_rows(10))
    out = tmp_path / "ds"
    from cai.stages.export import to_dataset as make

    make(sft=sft, test_fraction=0.0).save_to_disk(str(out))  # what earlier versions wrote
    result = CliRunner().invoke(app, ["export", "--sft", str(sft), "-o", str(out), "--test-fraction", "0"])
    assert result.exit_code == 0, result.output
    assert "test_sft: 0 rows (empty: left out)" in result.output
    assert not (out / "dataset_dict.json").exists() and not (out / "train_sft").exists()
    loaded = datasets.load_dataset(str(out.resolve()))
    assert list(loaded) == ["train_sft"] and loaded["train_sft"].num_rows == 10
