"""The engine manager with real server processes: one per checkpoint, reused across slots and stages,
replaced when the checkpoint changes, all stopped at the end; answers through the openai backend."""

from __future__ import annotations

import shutil

import pytest

from cai.core.errors import CaiError
from cai.core.records import SamplingParams
from cai.engines.commands import Checkpoint
from cai.engines.manager import EngineManager
from tests.unit.engines.procs import alive, fake_argv


def fake_command(ck: Checkpoint, host: str, port: int) -> list[str]:
    return fake_argv(port, "--host", host, "--model", ck.model, *[str(a) for a in ck.args or []])


def manager(tmp_path, **kw) -> EngineManager:
    return EngineManager(tmp_path, commands={"fake": fake_command}, grace=1.0, **kw)


def pids(m: EngineManager) -> list[int]:
    return [r.server.process.pid for r in m.servers.values()]


def test_spec_points_at_the_server_and_generates_through_the_openai_backend(tmp_path):
    with manager(tmp_path) as m:
        spec = m.backend_spec("policy", "fake", Checkpoint("sft-model"), concurrency=2)
        assert spec.backend == "openai" and spec.name == "sft-model" and spec.concurrency == 2
        assert spec.base_url[0].startswith("http://127.0.0.1:") and spec.base_url[0].endswith("/v1")
        chats = [[{"role": "user", "content": "hi"}]]
        out = spec.build().generate(chats, SamplingParams(n=2, max_new_tokens=4))
        assert [g.text for g in out] == ["ok from sft-model"] * 2
        assert (tmp_path / "engines" / "policy-fake.log").read_text().startswith("\n$ ")
        (pid,) = pids(m)
    assert not alive(pid)


def test_same_checkpoint_is_reused_a_new_one_replaces_it(tmp_path):
    with manager(tmp_path) as m:
        first = m.backend_spec("policy", "fake", Checkpoint("base"))
        (base_pid,) = pids(m)
        assert m.backend_spec("eval", "fake", Checkpoint("base")) == first  # another stage, same server
        assert pids(m) == [base_pid]
        second = m.backend_spec("policy", "fake", Checkpoint("sft"))  # eval still uses base: both run
        assert second.base_url != first.base_url and len(pids(m)) == 2
        m.backend_spec("eval", "fake", Checkpoint("sft"))  # nobody uses base any more: stopped
        assert not alive(base_pid) and len(pids(m)) == 1
        m.backend_spec("eval", "fake", Checkpoint("sft", args=["--grandchild"]))  # other args, other server
        assert len(pids(m)) == 2
        running = pids(m)
    assert not any(alive(p) for p in running) and m.servers == {}


def test_a_server_that_died_is_started_again(tmp_path):
    with manager(tmp_path) as m:
        m.backend_spec("policy", "fake", Checkpoint("base"))
        (run,) = m.servers.values()
        run.server.stop()
        spec = m.backend_spec("policy", "fake", Checkpoint("base"))
        assert m.servers[next(iter(m.servers))].server.running and spec.base_url != run.spec.base_url


def test_missing_local_model_path_is_one_line_before_any_launch(tmp_path):
    with manager(tmp_path) as m, pytest.raises(CaiError) as err:
        m.backend_spec("policy", "fake", Checkpoint(str(tmp_path / "no-such-sft")))
    msg = str(err.value)
    assert msg.startswith(f"engine fake cannot start: {tmp_path / 'no-such-sft'} does not exist; command: ")
    assert f"log: {tmp_path / 'engines' / 'policy-fake.log'}" in msg and m.servers == {}


def test_unknown_kind_and_missing_engine_package(tmp_path):
    with manager(tmp_path) as m, pytest.raises(CaiError, match="unknown managed engine"):
        m.backend_spec("policy", "tgi", Checkpoint("m"))
    if shutil.which("vllm") is None:
        with EngineManager(tmp_path) as m, pytest.raises(CaiError) as err:
            m.backend_spec("policy", "vllm", Checkpoint("Qwen/Qwen2.5-0.5B-Instruct"))
        assert str(err.value).startswith("engine vllm cannot start: program 'vllm' not found; "
                                         "command: vllm serve")
        assert "pip install vllm" in str(err.value)


def test_an_error_in_a_stage_stops_every_server(tmp_path):
    with pytest.raises(KeyboardInterrupt), manager(tmp_path) as m:
        m.backend_spec("policy", "fake", Checkpoint("a"))
        m.backend_spec("feedback", "fake", Checkpoint("b"))
        running = pids(m)
        raise KeyboardInterrupt
    assert len(running) == 2 and not any(alive(p) for p in running)
