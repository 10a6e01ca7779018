"""cai.stages.export_files: parquet splits + a dataset card that ``datasets.load_dataset(DIR)`` reads back."""

from __future__ import annotations

import pytest

from cai.core.errors import CaiError
from cai.stages.export import to_dataset
from cai.stages.export_files import is_export, write_export
from tests.unit.stages.test_export import PREF_COLUMNS, SFT_COLUMNS, _jsonl, _pref_rows, _sft_rows


def _load(folder, *args):
    import datasets

    return datasets.load_dataset(str(folder.resolve()), *args)


@pytest.fixture
def both(tmp_path):
    return to_dataset(sft=_jsonl(tmp_path / "s.jsonl", _sft_rows(40)),
                      prefs=_jsonl(tmp_path / "p.jsonl", _pref_rows(30)), test_fraction=0.3, seed=2)


def test_load_dataset_returns_the_four_named_splits(tmp_path, both):
    import datasets

    write_export(both, tmp_path / "ex")
    loaded = _load(tmp_path / "ex")
    assert list(loaded) == ["train_sft", "test_sft", "train_prefs", "test_prefs"]
    for name in loaded:
        assert loaded[name].num_rows == both[name].num_rows > 0
        assert sorted(loaded[name]["id"]) == sorted(both[name]["id"])
    union = ["id", "prompt", "completion", "chosen", "rejected", "p_chosen", "source", "weight", "ai_label",
             "provenance"]
    assert all(loaded[n].column_names == union for n in loaded)  # one config, one schema
    sft_row, pref_row = loaded["train_sft"][0], loaded["train_prefs"][0]
    assert sft_row["chosen"] is None and pref_row["completion"] is None and pref_row["p_chosen"] == 0.75
    prov = loaded["train_sft"].features["provenance"]
    assert isinstance(prov, dict) and isinstance(prov["constitution"], dict)  # a struct, not JSON text
    assert prov["sampling"]["stop"] == datasets.List(datasets.Value("string"))
    assert sft_row["provenance"]["model"] == "tiny" and sft_row["provenance"]["principle_ids"] == ["harmless"]
    provs = list(loaded["train_prefs"]["provenance"]) + list(loaded["test_prefs"]["provenance"])
    assert None in provs and any(p and p["model"] == "tiny" for p in provs)  # rows without provenance


def test_kind_configs_have_own_columns(tmp_path, both):
    write_export(both, tmp_path / "ex")
    sft, prefs = _load(tmp_path / "ex", "sft"), _load(tmp_path / "ex", "prefs")
    assert list(sft) == ["train_sft", "test_sft"] and list(prefs) == ["train_prefs", "test_prefs"]
    assert sft["train_sft"].column_names == SFT_COLUMNS and prefs["test_prefs"].column_names == PREF_COLUMNS


def test_single_kind_and_empty_split(tmp_path):
    dd = to_dataset(prefs=_jsonl(tmp_path / "p.jsonl", _pref_rows(6)), test_fraction=0.0)
    write_export(dd, tmp_path / "ex")
    loaded = _load(tmp_path / "ex")
    assert list(loaded) == ["train_prefs"] and loaded["train_prefs"].column_names == PREF_COLUMNS
    assert not (tmp_path / "ex" / "data" / "test_prefs-00000-of-00001.parquet").exists()


def test_foreign_provenance_still_a_struct(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "provenance": p}
            for i, p in enumerate([{"tool": "x", "n": 1}, None, {"tool": "y"}, {}])]
    dd = to_dataset(sft=_jsonl(tmp_path / "s.jsonl", rows), test_fraction=0.0)
    write_export(dd, tmp_path / "ex")
    loaded = _load(tmp_path / "ex")["train_sft"]
    assert set(loaded.features["provenance"]) == {"tool", "n"}
    assert sorted(map(str, loaded["provenance"])) == sorted(
        map(str, [{"tool": "x", "n": 1}, None, {"tool": "y", "n": None}, None]))


def test_dataset_card_metadata(tmp_path, both):
    from huggingface_hub import DatasetCard

    from cai.constitution.load import load_constitution

    const = load_constitution("harmless")
    rows = _pref_rows(8)
    for r in rows:
        r["provenance"] = {"constitution": const.ref().model_dump(), "model": "m"}
    dd = to_dataset(prefs=_jsonl(tmp_path / "p.jsonl", rows), test_fraction=0.25)
    path = write_export(dd, tmp_path / "ex", license="cc-by-4.0", repo_id="me/prefs")
    card = DatasetCard.load(path)
    assert card.data.license == "cc-by-4.0" and "cai" in card.data.tags and "dpo" in card.data.tags
    assert card.data.constitution == [{"name": const.name, "version": const.version, "hash": const.hash}]
    assert [c["config_name"] for c in card.data.configs] == ["default"]
    assert {f["split"] for f in card.data.configs[0]["data_files"]} == set(dd)
    assert const.to_yaml().strip() in card.text and 'load_dataset("me/prefs")' in card.text
    assert is_export(tmp_path / "ex")


def test_refuses_a_folder_that_is_not_an_export(tmp_path, both):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "README.md").write_text("# my notes\n")
    with pytest.raises(CaiError, match="not empty and holds no earlier export"):
        write_export(both, busy)
    assert (busy / "README.md").read_text() == "# my notes\n" and not (busy / "data").exists()
