"""Secrets: an API key given through the environment never lands in a record, log, card or report.

Every stage that can talk to a server runs against the stub OpenAI-compatible
server (:mod:`tests.server_control`) with the key in the environment, the stub
checks the key really was sent, and then every file the runs wrote (records,
derived outputs, stats, audit report and plot, model card, trainer files) and
everything they printed is searched for it, raw and base64-encoded. A server
that echoes the key in a 401 and ``--debug`` tracebacks are covered too.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import ROOT
from tests.helpers.server_control import stub_openai

SECRET = "sk-cai-secret-4b1d-NEVER-WRITE-ME-93e7"


def forms(secret: str) -> list[bytes]:
    """The key as it could appear: raw, and base64 of it (as in a Basic auth header).

    >>> [f[:6] for f in forms("abc")]
    [b'abc', b'YWJj']
    """
    raw = secret.encode()
    return [raw, base64.b64encode(raw)]


def leaks(root: Path, texts: list[str]) -> list[str]:
    """Every file under ``root`` and every text that holds the secret in any form."""
    found = [str(p) for p in root.rglob("*")
             if p.is_file() and any(f in p.read_bytes() for f in forms(SECRET))]
    found += [t[:200] for t in texts if any(f.decode() in t for f in forms(SECRET))]
    return found


def cai(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cai", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_api_key_from_env_is_never_written(tmp_path, tiny_model_dir):
    inputs, runs = tmp_path / "in", tmp_path / "runs"
    inputs.mkdir()
    prompts = inputs / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"How do I bake loaf {i}?"}) + "\n" for i in range(3)))
    pairs = inputs / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"})
                             + "\n" for i in range(4)))
    sft = inputs / "sft.jsonl"
    sft.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": "Mix flour and water."}) + "\n"
                           for i in range(4)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CAI_SECRET_KEY": SECRET,
           "OPENAI_API_KEY": SECRET}
    texts: list[str] = []
    with stub_openai() as (url, state):
        key = ["--api-key-env", "CAI_SECRET_KEY"]
        be = ["--backend", "openai", "--base-url", url, "-m", "stub-model", *key]
        runs_ok = [
            ["generate", "-p", str(prompts), "-o", str(runs / "gen.jsonl"), *be],
            ["critique", "-p", str(prompts), "-o", str(runs / "critique"), "--rounds", "1", *be],
            # OPENAI_API_KEY not named: same key
            ["label", "-p", str(prompts), "-o", str(runs / "label"), *be],
            ["audit", "labeler", "--pairs", str(pairs), "-m", "stub-model", "--feedback-backend", "openai",
             "--feedback-base-url", url, *key, "-o", str(runs / "audit")],
            ["train", "sft", "--data", str(sft), "-m", str(tiny_model_dir), "--max-steps", "1", "-o",
             str(runs / "sft")],
            ["env"],
        ]
        for args in runs_ok:
            r = cai(args, env)
            assert r.returncode == 0, (args, r.stderr[-3000:])
            texts += [r.stdout, r.stderr]
        # a server that echoes the key back in its 401, with and without --debug tracebacks
        for debug in ([], ["--debug"]):
            r = cai([*debug, "generate", "-p", str(prompts), "-o", str(runs / "auth.jsonl"),
                     "--backend", "openai", "--base-url", url, "-m", "auth", *key, "--max-retries", "0"], env)
            assert r.returncode != 0 and "authentication failed" in r.stderr and "CAI_SECRET_KEY" in r.stderr
            texts += [r.stdout, r.stderr]
        seen = {x["key"] for x in state.requests}
    assert seen == {SECRET}  # the key was really used, so a leak could have happened
    assert {x["logprobs"] for x in state.requests} == {True, False}  # generation and scoring both ran
    for produced in ("gen.jsonl", "critique/revisions.jsonl", "label/labels.jsonl", "label/preferences.jsonl",
                     "audit/audit.json", "sft/README.md"):
        assert (runs / produced).exists(), produced
    assert leaks(runs, texts) == []


def test_no_command_takes_a_key_on_the_command_line():
    """Keys come only from the environment: no option could put one in shell history or a process list."""
    import typer.main

    from cai.cli import app

    def walk(group, path=()):
        cmd = typer.main.get_command(group) if not hasattr(group, "params") else group
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, (*path, name))
        for param in getattr(cmd, "params", []):
            yield path, param

    options = [(path, opt) for path, p in walk(app) for opt in getattr(p, "opts", [])]
    assert len(options) > 50
    bad = [(path, o) for path, o in options if "key" in o.lower() and not o.lower().endswith("key-env")]
    assert bad == []
    assert any(o == "--api-key-env" for _, o in options)
