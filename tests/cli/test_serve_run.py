"""`cai serve --run RUN_DIR` on what a core + regions run leaves (:mod:`cai.run.regions`): ``core/model``
(a link to the core policy) and a LoRA adapter per region, no merged copies. --check plans one engine per
layer; (integration) cai serve merges each adapter onto the core, routes each region to its layer,
streams, and stops with nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_serve import (
    PROMPT,
    _procs_mentioning,
    direct_answers,
    distinct_model,
    start_serve,
    stop_serve,
    streamed,
)
from tests.helpers.cli import run_cli
from tests.unit.engines.procs import wait_gone

REGIONS = ("eu", "us")
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def region_adapter(core: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter on ``core`` whose (seeded, strong) weights change the core's greedy answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(core)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=LINEAR,
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    gen = torch.Generator().manual_seed(200 + seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    peft_model.save_pretrained(out)
    config = out / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "base_model_name_or_path": str(core)},
                                 indent=2))
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """RUN/sft/model (the core policy), RUN/core/model -> ../sft/model, RUN/regions/{eu,us}/adapter."""
    run = tmp_path_factory.mktemp("serve-run")
    distinct_model(run / "sft" / "model", 0)
    (run / "core").mkdir()
    (run / "core" / "model").symlink_to(Path("..") / "sft" / "model", target_is_directory=True)
    for seed, region in enumerate(REGIONS, 1):
        region_adapter(run / "core" / "model", run / "regions" / region / "adapter", seed)
    return run


def expected_check(run: Path) -> list[str]:
    """What ``cai serve --run RUN --check`` prints: one transformers engine per layer (a region's is
    its merged copy under RUN/serve/merged), then the default rules."""
    core = (run / "sft" / "model").resolve()
    return [f"engine transformers [core]: {core} -> core",
            *(f"engine transformers [{r}]: {run / 'serve' / 'merged' / r} -> {r}" for r in REGIONS),
            "rule 1: header X-User-Region", "rule 2: metadata.region", "default: core; unknown regions: core"]


def test_check_plans_a_merged_engine_per_region(run_dir, capsys, monkeypatch):
    code, out, err = run_cli(["serve", "--run", str(run_dir), "--check"], capsys, monkeypatch)
    assert code == 0, err
    assert out.splitlines() == expected_check(run_dir)
    assert not (run_dir / "serve").exists()  # --check merges nothing, starts nothing


@pytest.mark.integration
def test_serve_run_merges_adapters_routes_regions_streams_and_leaves_nothing(run_dir, capsys, monkeypatch):
    from openai import OpenAI

    assert not (run_dir / "serve" / "merged").exists()  # only adapters: cai serve merges them itself
    proc, port, health = start_serve(["--run", str(run_dir), "--startup-timeout", "120"], wait=240)
    try:
        assert health["status"] == "ok" and sorted(health["layers"]) == ["core", "eu", "us"]
        router = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        direct = direct_answers(health)  # each layer's own greedy answer, asked of its engine
        assert len(set(direct.values())) == 3, direct  # the adapters change the core's answer, differently
        for region, layer in (("eu", "eu"), ("us", "us"), ("mars", "core")):
            raw = router.chat.completions.with_raw_response.create(
                model="cai", messages=PROMPT, max_tokens=8, extra_headers={"X-User-Region": region})
            assert raw.headers["x-cai-layer"] == layer
            assert raw.parse().choices[0].message.content == direct[layer], region
        raw = router.chat.completions.with_raw_response.create(
            model="cai", messages=PROMPT, max_tokens=8, extra_body={"metadata": {"region": "us"}})
        assert raw.headers["x-cai-layer"] == "us"
        assert raw.parse().choices[0].message.content == direct["us"]
        layer, chunks = streamed(router, {"X-User-Region": "EU"})  # region names match in any case
        assert layer == "eu" and len(chunks) > 2 and "".join(chunks) == direct["eu"]
        engines = _procs_mentioning(str(run_dir))
        assert len(engines) >= 4  # cai serve and its three engines (and their watchdogs)
    finally:
        out = stop_serve(proc)
    assert all(f"merging {run_dir / 'regions' / r / 'adapter'}" in out for r in REGIONS), out
    assert "-> layer core (unknown region 'mars' (header X-User-Region): core layer): 200" in out
    assert wait_gone(engines, 10) == [] and _procs_mentioning(str(run_dir)) == []
    for region in REGIONS:  # cai serve merged each adapter onto the core, where --check says
        assert (run_dir / "serve" / "merged" / region / "config.json").is_file()
    code, out, err = run_cli(["serve", "--run", str(run_dir), "--check"], capsys, monkeypatch)
    assert code == 0, err
    assert out.splitlines() == expected_check(run_dir)
