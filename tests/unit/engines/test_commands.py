"""The launch argv of every engine kind, the user's extra args, and the model name requests carry."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from cai.core.errors import CaiError
from cai.engines.commands import (
    COMMANDS,
    Checkpoint,
    extra_args,
    launch_command,
    llama_server_command,
    request_model,
    sglang_command,
    transformers_command,
    vllm_command,
)
from cai.engines.process import resolve_program

H, P = "127.0.0.1", 8123
LORA = (("sft", "/runs/x/sft/adapter"), ("dpo", "/runs/x/dpo/adapter"))


def test_vllm_plain_and_with_lora_and_gpu_options():
    assert vllm_command(Checkpoint("/m"), H, P) == ["vllm", "serve", "/m", "--host", H, "--port", "8123"]
    argv = vllm_command(Checkpoint("base", adapters=LORA, tensor_parallel_size=4, gpu_memory_utilization=0.5,
                                   trust_remote_code=True, args={"max_lora_rank": 64}), H, P)
    assert argv[:3] == ["vllm", "serve", "base"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.5"
    lora = argv.index("--lora-modules")
    assert argv[lora - 1] == "--enable-lora"
    assert argv[lora + 1:lora + 3] == ["sft=/runs/x/sft/adapter", "dpo=/runs/x/dpo/adapter"]
    assert argv[-2:] == ["--max-lora-rank", "64"]  # the user's args come last
    assert "--trust-remote-code" in argv


def test_sglang_uses_its_own_flag_names():
    argv = sglang_command(Checkpoint("base", adapters=LORA[:1], served_name="pol", tensor_parallel_size=2,
                                     gpu_memory_utilization=0.7, dtype="bfloat16"), H, P)
    assert argv[:3] == ["python", "-m", "sglang.launch_server"]
    assert argv[argv.index("--model-path") + 1] == "base"
    assert argv[argv.index("--tp-size") + 1] == "2"
    assert argv[argv.index("--mem-fraction-static") + 1] == "0.7"
    assert argv[argv.index("--served-model-name") + 1] == "pol"
    assert argv[argv.index("--lora-paths") + 1] == "sft=/runs/x/sft/adapter"
    assert "--enable-lora" in argv and "--tensor-parallel-size" not in argv


def test_llama_server_gguf_lora_and_alias():
    argv = llama_server_command(Checkpoint("/m.gguf", adapters=LORA, served_name="pol",
                                           args=["-ngl", "99", "-c", "4096"]), H, P)
    assert argv[:3] == ["llama-server", "-m", "/m.gguf"]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--lora"] == [p for _, p in LORA]
    assert argv[argv.index("--alias") + 1] == "pol"
    assert argv[-4:] == ["-ngl", "99", "-c", "4096"]
    with pytest.raises(CaiError, match="llama-server has no option for gpu_memory_utilization"):
        llama_server_command(Checkpoint("/m.gguf", gpu_memory_utilization=0.5), H, P)


def test_transformers_serve_preloads_the_model_and_refuses_what_it_cannot_do():
    argv = transformers_command(Checkpoint("/runs/x/sft", dtype="float32",
                                           args={"device": "cpu", "continuous_batching": True}), H, P)
    assert argv == ["transformers", "serve", "/runs/x/sft", "--host", H, "--port", "8123",
                    "--dtype", "float32", "--device", "cpu", "--continuous-batching"]
    for bad in ({"adapters": LORA}, {"tensor_parallel_size": 2}, {"served_name": "x"}):
        with pytest.raises(CaiError, match="engine transformers has no option for"):
            transformers_command(Checkpoint("/m", **bad), H, P)


def test_transformers_flags_exist_in_the_installed_cli():
    """The flags the builder writes are options of this environment's ``transformers serve``."""
    argv = resolve_program(["transformers", "serve", "--help"])
    if argv is None:
        pytest.skip("no transformers CLI in this environment")
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    for flag in ("--host", "--port", "--dtype", "--device", "--trust-remote-code", "FORCE_MODEL"):
        assert flag in result.stdout


@pytest.mark.parametrize("kind", sorted(COMMANDS))
def test_every_kind_passes_host_port_and_user_args(kind):
    model = "/m.gguf" if kind == "llama-server" else "/m"
    argv = launch_command(kind, Checkpoint(model, args={"some_flag": "v", "switch": True}), H, P)
    assert argv[argv.index("--host") + 1] == H and argv[argv.index("--port") + 1] == "8123"
    assert argv[-3:] == ["--some-flag", "v", "--switch"]
    assert all(isinstance(a, str) for a in argv)


@pytest.mark.parametrize("args", [{"port": 1}, {"host": "0.0.0.0"}, ["--port=9"], ["--lora-modules", "a=b"],
                                  {"model": "other"}])
def test_args_may_not_set_what_cai_sets(args):
    with pytest.raises(CaiError, match="which cai sets itself"):
        launch_command("vllm", Checkpoint("/m", args=args), H, P)


def test_extra_args_forms():
    assert extra_args(None) == []
    assert extra_args({"a": 1.5, "b": None, "c": False}) == ["--a", "1.5", "--no-c"]
    config = {"compilation_config": {"level": 3}}
    assert extra_args(config) == ["--compilation-config", json.dumps({"level": 3})]
    assert extra_args(["--x", 3]) == ["--x", "3"]
    with pytest.raises(CaiError, match="must be a mapping or a list"):
        extra_args("--max-model-len 4096", "vllm")


def test_request_model_per_kind():
    assert request_model("vllm", Checkpoint("b", adapters=LORA)) == "sft"
    assert request_model("sglang", Checkpoint("b", adapters=LORA, served_name="s")) == "s:sft"
    assert request_model("llama-server", Checkpoint("/m.gguf", served_name="pol")) == "pol"
    assert request_model("transformers", Checkpoint("/runs/x/sft")) == "/runs/x/sft"


def test_checkpoint_key_separates_what_changes_the_server():
    base = Checkpoint("/m", args={"a": 1, "b": 2})
    assert base.key() == Checkpoint("/m", args={"b": 2, "a": 1}).key()
    for other in (Checkpoint("/m2", args={"a": 1, "b": 2}), Checkpoint("/m", args={"a": 2, "b": 2}),
                  Checkpoint("/m", args={"a": 1, "b": 2}, adapters=LORA),
                  Checkpoint("/m", args={"a": 1, "b": 2}, tensor_parallel_size=2)):
        assert other.key() != base.key()


def test_unknown_kind():
    with pytest.raises(CaiError, match="unknown managed engine"):
        launch_command("ollama", Checkpoint("m"), H, P)
