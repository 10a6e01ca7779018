"""A real managed ``transformers serve`` on the tiny model: it answers through the openai backend, and a
wrong model path is one line naming the engine, the command and the log."""

from __future__ import annotations

import pytest

from cai.core.errors import CaiError
from cai.core.records import SamplingParams
from cai.engines.commands import Checkpoint
from cai.engines.manager import EngineManager
from tests.unit.engines.procs import alive, group_members

pytestmark = pytest.mark.integration
CPU = {"device": "cpu"}


def test_managed_transformers_serve_generates_through_the_openai_backend(tmp_path, tiny_model_dir):
    with EngineManager(tmp_path, startup_timeout=180) as engines:
        ck = Checkpoint(str(tiny_model_dir), dtype="float32", args=CPU)
        spec = engines.backend_spec("policy", "transformers", ck, concurrency=2)
        assert spec.name == str(tiny_model_dir)  # the name transformers serve pins
        chats = [[{"role": "user", "content": "How do I bake bread?"}], [{"role": "user", "content": "Hi"}]]
        out = spec.build().generate(chats, SamplingParams(max_new_tokens=5, n=2))
        assert len(out) == 4 and all(g.finish_reason in ("length", "stop") for g in out)
        assert all(0 < g.completion_tokens <= 5 for g in out)
        assert engines.backend_spec("eval", "transformers", ck, concurrency=2) == spec  # reused
        (running,) = engines.servers.values()
        leader = running.server.process.pid
    assert not alive(leader) and group_members(leader) == []
    assert "$ " in (tmp_path / "engines" / "policy-transformers.log").read_text()


def test_a_model_path_transformers_cannot_load_exits_early(tmp_path):
    bad = tmp_path / "not-a-model"
    bad.mkdir()  # exists, so cai launches it; the server cannot load it
    with EngineManager(tmp_path, startup_timeout=120) as engines, pytest.raises(CaiError) as err:
        engines.backend_spec("policy", "transformers", Checkpoint(str(bad), args=CPU))
    msg = str(err.value)
    assert msg.startswith("engine transformers exited with code ")
    assert f"serve {bad} --host 127.0.0.1" in msg
    assert f"log: {tmp_path / 'engines' / 'policy-transformers.log'}" in msg and "its last line:" in msg
