"""cai.run.hub: staged hub repos hold parquet (datasets) or model files, each with a card naming its
lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard, ModelCard

from cai.constitution.load import load_constitution
from cai.run.hub import push_to_hub
from cai.run.recipe import Recipe
from cai.train.common.cards import write_model_card

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _rows(kind: str, n: int, prov: dict) -> list[dict]:
    user = [{"role": "user", "content": "q"}]
    if kind == "sft":
        return [{"id": f"s{i}", "prompt": [{"role": "user", "content": f"q{i}"}],
                 "completion": [{"role": "assistant", "content": f"a{i}"}], "provenance": prov}
                for i in range(n)]
    return [{"id": f"p{i}", "prompt": user, "chosen": [{"role": "assistant", "content": f"good {i}"}],
             "rejected": [{"role": "assistant", "content": f"bad {i}"}], "p_chosen": 0.8, "source": "ai",
             "provenance": prov} for i in range(n)]


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A run folder as the stages leave it: SFT and preference JSONL, an SFT model and a policy."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    const = load_constitution("harmless")
    prov = {"constitution": const.ref().model_dump(), "model": "default"}
    run_dir = tmp_path / "runs" / "t"
    sft = _write(run_dir / "critique" / "sft.jsonl", _rows("sft", 30, prov))
    prefs = _write(run_dir / "label" / "preferences.jsonl", _rows("prefs", 20, prov))
    for stage, base, data in (("sft", "default", {"train": [sft]}),
                              ("policy", str(run_dir / "sft" / "model"), {"preferences": [prefs]})):
        model = run_dir / stage / "model"
        model.mkdir(parents=True)
        (model / "config.json").write_text("{}")
        (model / "model.safetensors").write_bytes(b"weights")
        (model / "checkpoint-1").mkdir()
        (model / "checkpoint-1" / "x.bin").write_bytes(b"x")
        write_model_card(model, trainer=stage if stage == "sft" else "dpo", base_model=base, data_files=data,
                         metrics={"loss": 0.25})
    outputs = {"critique": {"sft": "critique/sft.jsonl"}, "label": {"preferences": "label/preferences.jsonl"},
               "sft": {"model": "sft/model"}, "policy": {"model": "policy/model", "method": "dpo"}}
    recipe = Recipe(name="t", prompts={"redteam": ["Anthropic/hh-rlhf:harmless-base:train"]},
                    hub={"namespace": "me"})
    return recipe, run_dir, outputs, const


def test_dataset_repos_are_parquet_with_cards(run):
    import datasets

    recipe, run_dir, outputs, const = run
    lines = push_to_hub(recipe, run_dir, outputs, "stage")
    assert "HF_HUB_OFFLINE is set: nothing was pushed" in lines[-1]
    for name, kind, n in (("t-sft-data", "sft", 30), ("t-preferences", "prefs", 20)):
        folder = run_dir / "hub" / name
        assert not list(folder.rglob("*.jsonl"))  # parquet, not the raw JSONL
        loaded = datasets.load_dataset(str(folder))
        assert list(loaded) == [f"train_{kind}", f"test_{kind}"]
        assert sum(s.num_rows for s in loaded.values()) == n
        assert isinstance(loaded[f"train_{kind}"].features["provenance"], dict)
        card = DatasetCard.load(folder / "README.md")
        assert {"cai", "constitutional-ai"} <= set(card.data.tags) and card.data.license == "apache-2.0"
        assert card.data.constitution == [const.ref().model_dump()]
        assert card.data.source_datasets == ["Anthropic/hh-rlhf"]
        assert const.to_yaml().strip() in card.text and "## Recipe" in card.text
        assert f'load_dataset("me/{name}")' in card.text


def test_model_repos_name_their_lineage(run):
    recipe, run_dir, outputs, const = run
    push_to_hub(recipe, run_dir, outputs, "stage")
    sft = ModelCard.load(run_dir / "hub" / "t-sft" / "README.md")
    assert sft.data.base_model == SMOL and sft.data.datasets == ["me/t-sft-data"]
    assert sft.data.license == "apache-2.0" and sft.data.library_name == "transformers"
    assert sft.data.constitution == [const.ref().model_dump()] and "sft" in sft.data.tags
    assert const.to_yaml().strip() in sft.text and "## Training card" in sft.text
    assert "- loss: 0.25" in sft.text and sft.text.count(const.to_yaml().strip()) == 1  # the YAML once
    policy = ModelCard.load(run_dir / "hub" / "t-policy" / "README.md")
    assert policy.data.base_model == "me/t-sft" and policy.data.datasets == ["me/t-preferences"]
    folder = run_dir / "hub" / "t-policy"
    assert (folder / "model.safetensors").is_file() and not (folder / "checkpoint-1").exists()


def test_lineage_without_the_pushed_sft_model(run):
    recipe, run_dir, outputs, _ = run
    recipe = recipe.model_copy(update={"hub": recipe.hub.model_copy(update={"artifacts": ["policy"]})})
    push_to_hub(recipe, run_dir, outputs, "stage")
    assert sorted(p.name for p in (run_dir / "hub").iterdir()) == ["t-policy"]
    policy = ModelCard.load(run_dir / "hub" / "t-policy" / "README.md")
    # the SFT model is not pushed: its own card's hub id (never its local path); no dataset repo to link
    assert policy.data.base_model == SMOL and policy.data.datasets is None


def test_an_empty_record_set_makes_no_repo(run):
    recipe, run_dir, outputs, _ = run
    (run_dir / "critique" / "sft.jsonl").write_text("")
    lines = push_to_hub(recipe, run_dir, outputs, "stage")
    assert not (run_dir / "hub" / "t-sft-data").exists() and not any("t-sft-data" in line for line in lines)
    assert ModelCard.load(run_dir / "hub" / "t-sft" / "README.md").data.datasets is None
