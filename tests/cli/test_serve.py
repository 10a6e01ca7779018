"""`cai serve`: --check prints the plan, bad input is one line, and (integration) real transformers serve
engines behind the router answer per region, stream, and stop with nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cai.engines.process import free_port
from tests.helpers.cli import one_line_error, run_cli
from tests.helpers.tiny import build_tiny_model
from tests.unit.engines.procs import wait_gone

PROMPT = [{"role": "user", "content": "How do I bake bread?"}]


def distinct_model(path: Path, seed: int) -> Path:
    """A tiny model whose greedy answers differ from another seed's (plain tiny models all answer '\\n')."""
    import torch
    from transformers import AutoModelForCausalLM

    build_tiny_model(path, seed=seed)
    model = AutoModelForCausalLM.from_pretrained(path)
    gen = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    model.save_pretrained(path)
    return path


ROUTES = """\
layers:
  core: core
  eu: eu
  us: us
rules:
  - header: X-User-Region
  - locale: {de: eu, en-us: us}
"""


@pytest.fixture
def routes(tmp_path):
    for name in ("core", "eu", "us"):
        (tmp_path / name).mkdir()
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES)
    return path


def test_check_prints_engines_and_rules(routes, capsys, monkeypatch):
    code, out, err = run_cli(["serve", "--routes", str(routes), "--check"], capsys, monkeypatch)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"engine transformers [core]: {(routes.parent / 'core').resolve()} -> core"
    assert lines[3:] == ["rule 1: header X-User-Region", "rule 2: locale de->eu, en-us->us",
                         "default: core; unknown regions: core"]
    argv = ["serve", "--routes", str(routes), "--engine", "vllm", "--check"]
    code, out, err = run_cli(argv, capsys, monkeypatch)
    assert code == 0 and len([ln for ln in out.splitlines() if ln.startswith("engine vllm")]) == 3


def test_bad_input_is_one_line(routes, capsys, monkeypatch):
    routes.write_text(ROUTES.replace("de: eu", "de: apac"))
    code, _, err = run_cli(["serve", "--routes", str(routes), "--check"], capsys, monkeypatch)
    one_line_error(code, err, f"{routes}:7: rules.1.locale.de: 'apac' is not a layer")
    code, _, err = run_cli(["serve", "--routes", str(routes), "--engine", "tgi"], capsys, monkeypatch)
    one_line_error(code, err, "--engine tgi: not an engine cai serve runs")
    code, _, err = run_cli(["serve"], capsys, monkeypatch)
    one_line_error(code, err, "cai serve needs --routes ROUTES.yaml or --run RUN_DIR")


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _procs_mentioning(text: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in entry.joinpath("cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def start_serve(args: list[str], wait: float = 180) -> tuple[subprocess.Popen, int, dict]:
    """``cai serve ARGS --port P`` in its own session, once its /health answers: (process, port, health)."""
    port = free_port()
    cai = [sys.executable, "-c", "from cai.cli import main; main()"]
    proc = subprocess.Popen([*cai, "serve", *args, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, start_new_session=True)
    deadline = time.monotonic() + wait
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            return proc, port, _get(f"http://127.0.0.1:{port}/health")
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("cai serve did not come up") from None
            time.sleep(0.5)


def direct_answers(health: dict) -> dict[str, str]:
    """Each layer's own greedy answer to PROMPT, asked of its engine directly (not through the router)."""
    from openai import OpenAI

    out = {}
    for layer, info in health["layers"].items():
        engine = OpenAI(base_url=info["engine"], api_key="x", max_retries=0)
        answer = engine.chat.completions.create(model=info["model"], messages=PROMPT, max_tokens=8)
        out[layer] = answer.choices[0].message.content
    return out


def streamed(router, headers: dict[str, str]) -> tuple[str, list[str]]:
    """One streamed answer to PROMPT through the router: (the layer that answered, its text chunks)."""
    with router.chat.completions.with_streaming_response.create(
            model="cai", messages=PROMPT, max_tokens=8, stream=True, extra_headers=headers) as resp:
        chunks = [c.choices[0].delta.content or "" for c in resp.parse() if c.choices]
        return resp.headers["x-cai-layer"], chunks


def stop_serve(proc: subprocess.Popen) -> str:
    """SIGTERM ``cai serve``; its output, once it exited 0."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped (SIGTERM); every engine stopped" in out
    return out


@pytest.mark.integration
def test_serve_routes_each_region_to_its_engine_streams_and_leaves_nothing(tmp_path):
    from openai import OpenAI

    for seed, name in enumerate(("core", "eu", "us")):
        distinct_model(tmp_path / name, seed)
    (tmp_path / "routes.yaml").write_text(ROUTES)
    proc, port, health = start_serve(["--routes", str(tmp_path / "routes.yaml"), "--log-dir",
                                      str(tmp_path / "logs"), "--startup-timeout", "120"])
    try:
        assert health["status"] == "ok"
        router = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        direct = direct_answers(health)
        assert len(set(direct.values())) == 3, direct  # the check below can tell the layers apart
        for region, layer in (("eu", "eu"), ("us", "us"), ("apac", "core")):
            raw = router.chat.completions.with_raw_response.create(
                model="cai", messages=PROMPT, max_tokens=8, extra_headers={"X-User-Region": region})
            assert raw.headers["x-cai-layer"] == layer
            assert raw.parse().choices[0].message.content == direct[layer], region
        layer, chunks = streamed(router, {"Accept-Language": "de-DE"})
        assert layer == "eu" and len(chunks) > 2 and "".join(chunks) == direct["eu"]
        engines = _procs_mentioning(str(tmp_path))
        assert len(engines) >= 4  # cai serve and its three engines (and their watchdogs)
    finally:
        out = stop_serve(proc)
    assert "-> layer core (unknown region 'apac' (header X-User-Region): core layer): 200" in out
    assert wait_gone(engines, 10) == [] and _procs_mentioning(str(tmp_path)) == []
