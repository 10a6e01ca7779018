"""``dtype: int8`` on the hf backend: the int8 linear, loading a tiny model, generation, scoring, the
calibration cache and the refusal on a GPU."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from cai.backends.hf import loading, quantize
from cai.backends.hf.backend import HFBackend
from cai.backends.hf.quantize import Int8Linear
from cai.backends.spec import BackendSpec, spec_from_options
from cai.core.errors import CaiError
from cai.core.records import SamplingParams

CHATS = [[{"role": "user", "content": "hi " * k}] for k in range(1, 6)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cai-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAI_CACHE_DIR", str(root))
        yield root / "models" / "int8"


@pytest.fixture(scope="module")
def fp32(tiny_model_dir) -> HFBackend:
    return HFBackend(str(tiny_model_dir), batch_size=3)


@pytest.fixture(scope="module")
def int8(tiny_model_dir, cache) -> HFBackend:
    return HFBackend(str(tiny_model_dir), batch_size=3, dtype="int8")


def test_int8_linear_is_close_and_each_row_is_independent_of_its_batch():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    x = torch.randn(5, 64) * torch.linspace(0.1, 4, 64)  # uneven channels, like a real model's
    q = Int8Linear.from_linear(lin, x.abs().amax(0))
    with torch.inference_mode():
        ref, got = lin(x), q(x)
        alone = q(x[2:3])
    assert got.shape == ref.shape and q.qweight.dtype == torch.int8
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()
    assert torch.equal(alone[0], got[2])  # per-row activation scales: no dependence on the neighbours


def test_int8_load_replaces_every_linear_and_caches_its_calibration(int8, cache):
    mods = list(int8.lm.modules())
    assert not any(type(m) is torch.nn.Linear for m in mods)
    # 2 layers x (q k v o gate up down) + the head
    assert sum(isinstance(m, Int8Linear) for m in mods) == 2 * 7 + 1
    assert int8.lm.cai_dtype == "int8" and int8.device == "cpu"
    assert len(list(cache.glob("*.safetensors"))) == 1


def test_generation_and_scoring_run_and_stay_near_fp32(int8, fp32):
    gens = int8.generate(CHATS, SamplingParams(max_new_tokens=6, temperature=0.0))
    assert len(gens) == len(CHATS) and all(0 < g.completion_tokens <= 6 for g in gens)
    sampled = int8.generate(CHATS[:2], SamplingParams(max_new_tokens=4, temperature=1.0, n=2, seed=3))
    assert [g.sample for g in sampled] == [0, 1, 0, 1]
    conts = [["yes", "no"]] * len(CHATS)
    s8, s32 = int8.score(CHATS, conts), fp32.score(CHATS, conts)
    assert all(math.isfinite(v) for row in s8 for v in row)
    assert max(abs(a - b) for r8, r32 in zip(s8, s32) for a, b in zip(r8, r32)) < 0.5


def test_prefix_cache_and_decode_loop_agree_with_no_reuse(int8):
    naive = HFBackend(int8.model, batch_size=3, model_obj=int8.lm, tokenizer=int8.tokenizer,
                      reuse_prefix=False)
    shared = [[{"role": "system", "content": "be brief " * 6}, *c] for c in CHATS]
    conts = [["yes", "no"]] * len(shared)
    for a, b in zip(int8.score(shared, conts), naive.score(shared, conts)):
        assert a == pytest.approx(b, abs=1e-3)
    params = SamplingParams(max_new_tokens=5, temperature=0.0)
    assert [g.text for g in int8.generate(shared, params)] == [g.text for g in naive.generate(shared, params)]


def test_second_load_reads_the_cache_instead_of_calibrating(tiny_model_dir, int8, monkeypatch):
    def no_calibration(*_a, **_k):
        raise AssertionError("calibrated again despite the cache")

    monkeypatch.setattr(quantize, "calibrate", no_calibration)
    again = HFBackend(str(tiny_model_dir), batch_size=3, dtype="int8")
    for (name, a), (_, b) in zip(int8.lm.named_buffers(), again.lm.named_buffers()):
        assert torch.equal(a, b), name


def test_cache_key_follows_the_weight_files(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    key = quantize.stats_key(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"xy")
    assert quantize.stats_key(str(tmp_path)) != key


def test_int8_is_refused_on_a_gpu_before_anything_is_loaded(tiny_model_dir, monkeypatch):
    def no_load(*_a, **_k):
        raise AssertionError("loaded a model before refusing")

    monkeypatch.setattr(loading, "from_pretrained", no_load)
    with pytest.raises(CaiError, match="int8 runs on the CPU only, not on cuda"):
        loading.load_causal_lm(str(tiny_model_dir), device="cuda", dtype="int8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, device left to choose
    with pytest.raises(CaiError, match="not on cuda"):
        loading.load_causal_lm(str(tiny_model_dir), dtype="int8")
    with pytest.raises(CaiError, match="--dtype int8|dtype int8 runs on the CPU only"):
        spec_from_options("hf", "default", device="mps", dtype="int8")
    with pytest.raises(ValueError, match="CPU only"):
        BackendSpec(device="cuda:0", dtype="int8")


def test_int8_specs_are_other_models_and_stages_can_ask_for_it():
    base = BackendSpec(name="default")
    assert base.with_dtype("int8").key() != base.key()
    assert base.with_dtype("int8").identity()["dtype"] == "int8"
    assert base.with_dtype(None) is base


def test_training_ignores_int8_with_a_warning(caplog):
    from cai.train.common.models import model_dtype

    with caplog.at_level(logging.WARNING, logger="cai.train.common.models"):
        assert model_dtype("int8") == torch.float32
    assert "int8 is for generation only" in caplog.text
