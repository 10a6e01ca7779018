"""The ``engine:`` setting: parsed with one-line errors, and turned into the spec a stage samples with."""

from __future__ import annotations

import pytest

from cai.backends.spec import BackendSpec
from cai.core.errors import CaiError
from cai.engines.commands import Checkpoint
from cai.engines.manager import EngineManager
from cai.engines.spec import ManagedEngine, ServerEngine, parse_engine, stage_backend
from tests.unit.engines.procs import fake_argv


def test_parse_engine_forms_and_errors():
    assert parse_engine(None) == "local" and parse_engine("local") == "local"
    assert parse_engine({"server": "http://h:1/v1"}) == ServerEngine(server=["http://h:1/v1"])
    managed = parse_engine({"managed": "vllm", "args": {"max_model_len": 4096},
                            "gpu_memory_utilization": 0.4})
    assert isinstance(managed, ManagedEngine) and managed.args == {"max_model_len": 4096}
    for bad, match in (("vllm", "is not an engine"),
                       ({"managed": "vllm", "tensor_parallel": 2}, "tensor_parallel"),
                       ({"managed": "vllm", "gpu_memory_utilization": 1.5}, "gpu_memory_utilization")):
        with pytest.raises(CaiError, match=rf"^policy\.engine: .*{match}.*\(fix: write engine: local"):
            parse_engine(bad, "policy.engine")


def test_local_keeps_the_role_settings():
    spec = stage_backend("local", role="policy", model="runs/x/sft",
                         local=BackendSpec(name="base", dtype="float32", batch_size=4))
    assert (spec.backend, spec.name, spec.dtype, spec.batch_size) == ("hf", "runs/x/sft", "float32", 4)


def test_managed_without_a_manager_is_an_error():
    with pytest.raises(CaiError, match="engine managed vllm needs a run"):
        stage_backend(ManagedEngine(managed="vllm"), role="policy", model="m", local=BackendSpec())


def test_managed_serves_the_merged_folder_or_base_plus_adapter(tmp_path):
    seen: list[Checkpoint] = []

    def fake(ck: Checkpoint, host: str, port: int) -> list[str]:
        seen.append(ck)
        return fake_argv(port, "--model", ck.adapters[0][0] if ck.adapters else ck.model)

    sft = tmp_path / "sft"
    (sft / "adapter").mkdir(parents=True)
    local = BackendSpec(dtype="float32", timeout=33)
    with EngineManager(tmp_path, commands={"vllm": fake}) as m:
        merged = stage_backend(ManagedEngine(managed="vllm", concurrency=3), role="policy", model=sft,
                               local=local, manager=m)
        assert merged.backend == "openai" and merged.name == str(sft.resolve())
        assert (merged.concurrency, merged.timeout) == (3, 33)
        assert seen[-1].model == str(sft.resolve()) and seen[-1].dtype == "float32"
        lora = stage_backend(ManagedEngine(managed="vllm", lora=True), role="policy", model=sft, local=local,
                             manager=m, base_model="Org/base")
        assert lora.name == "policy" and seen[-1].model == "Org/base"
        assert seen[-1].adapters == (("policy", str((sft / "adapter").resolve())),)
        assert len(m.servers) == 1  # the slot moved to the adapter server: the merged one was stopped
