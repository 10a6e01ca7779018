"""cai.train.common.cards: the training card is a huggingface_hub ModelCard with hub metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from cai.train.common.cards import write_model_card


def _prefs(path: Path, prov: dict | None) -> Path:
    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}],
             "chosen": [{"role": "assistant", "content": "a"}],
             "rejected": [{"role": "assistant", "content": "b"}], "source": "ai", "provenance": prov}
            for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def harmless():
    from cai.constitution.load import load_constitution

    return load_constitution("harmless")


def test_default_model_card_metadata(tmp_path, harmless):
    prefs = _prefs(tmp_path / "p.jsonl", {"constitution": harmless.ref().model_dump(), "model": "m"})
    path = write_model_card(tmp_path / "out", trainer="dpo", base_model="default",
                            data_files={"preferences": [prefs]}, metrics={"loss": 0.5})
    card = ModelCard.load(path)
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.license == "apache-2.0"
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-generation"
    assert {"cai", "trl", "dpo"} <= set(card.data.tags) and card.data.datasets is None  # local data only
    assert card.data.constitution == [{"name": harmless.name, "version": harmless.version,
                                       "hash": harmless.hash}]
    assert harmless.to_yaml().strip() in card.text  # the shipped constitution with that hash, in the body
    assert "- loss: 0.5" in card.text


def test_local_base_model_lineage(tmp_path, harmless):
    prefs = _prefs(tmp_path / "p.jsonl", None)
    first = write_model_card(tmp_path / "sft", trainer="sft", base_model="default",
                             data_files={"train": [prefs]})
    second = ModelCard.load(write_model_card(tmp_path / "rm", trainer="reward_model",
                                             base_model=str(first.parent), data_files={"train": [prefs]}))
    # a local folder: its own card's hub id, not its path; the licence follows
    assert second.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert second.data.license == "apache-2.0"
    assert second.data.pipeline_tag == "text-classification" and second.data.get("constitution") is None

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    third = ModelCard.load(write_model_card(tmp_path / "x", trainer="sft", base_model=str(bare),
                                            data_files={"train": [prefs]}))
    assert third.data.base_model is None and "base_model" not in third.content.split("---")[1]
    assert str(bare) not in third.content.split("---")[1]  # never a path in the metadata
    (bare / "config.json").write_text(json.dumps({"_name_or_path": "org/real-model"}))
    assert ModelCard.load(write_model_card(tmp_path / "y", trainer="sft", base_model=str(bare),
                                           data_files={"train": [prefs]})).data.base_model == "org/real-model"


def test_hub_ids_become_metadata(tmp_path):
    path = write_model_card(tmp_path / "o", trainer="dpo", base_model="org/base",
                            data_files={"preferences": ["Anthropic/hh-rlhf:harmless-base:train"]})
    card = ModelCard.load(path)
    assert card.data.base_model == "org/base" and card.data.datasets == ["Anthropic/hh-rlhf"]
    assert card.data.license is None  # unknown offline: left out, not guessed
    facts = json.loads((tmp_path / "o" / "cai_card.json").read_text())
    assert facts["data"][0]["hub_id"] == "Anthropic/hh-rlhf" and facts["data"][0]["sha256"] is None
