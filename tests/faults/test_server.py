"""Server faults: a `transformers serve` killed mid-run, restarted, and a slow server against --timeout.

`cai generate --backend openai` runs in a subprocess against a real server on
loopback. Killing the server mid-run must stop the command with exit 2 and one
``error:`` line that names the URL and says how to resume, and keep every
record already written; after a restart the same command finishes with each
record exactly once. A stub that answers slower than ``--timeout`` must be
given up on after ``--max-retries`` retries (the SDK's, the only retry layer)
with one line naming the URL and the timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cai.core.jsonl import read_records
from cai.core.records import CompletionRecord
from tests.helpers.paths import ROOT
from tests.helpers.server_control import kill, restart, stub_openai
from tests.helpers.servers import server_fixture

ENV = ({k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
       | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})

server = server_fixture(lambda request: request.getfixturevalue("tiny_model_dir"))


def generate_cmd(prompts: Path, out: Path, base_url: str, model: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cai", "generate", "-p", str(prompts), "-o", str(out),
            "--backend", "openai", "--base-url", base_url, "-m", model, "--max-new-tokens", "6", *extra]


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


@pytest.mark.integration
def test_server_killed_mid_run_then_restarted_loses_nothing(server, tmp_path):
    n = 40
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about bread number {i}."}) + "\n"
                               for i in range(n)))
    out = tmp_path / "out.jsonl"
    # one request at a time, two prompts a batch: records reach the file as the run goes
    cmd = generate_cmd(prompts, out, server.base_url, server.model, "--concurrency", "1", "--batch-size", "1",
                       "--max-retries", "0", "--timeout", "20")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the server could be killed"
    kill(server)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    errors = error_lines(err)
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    assert server.base_url in errors[0] and "cannot reach" in errors[0]
    assert "rerun the same command to resume" in errors[0] and str(out) in errors[0]
    kept = read_records(out, CompletionRecord)
    assert 4 <= len(kept) < n and out.read_bytes().endswith(b"\n")
    assert f"{len(kept)} answer(s) kept" in errors[0]

    restart(server)
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{len(kept)} already there" in r.stderr
    recs = read_records(out, CompletionRecord)
    assert len(recs) == n and len({x.id for x in recs}) == n
    assert recs[: len(kept)] == kept  # what was written before the crash is untouched
    assert (sorted(x.prompt[-1].content for x in recs)
            == sorted(f"Tell me about bread number {i}." for i in range(n)))


STAGES = {  # each stage's command against a server, and the file it appends to
    "generate": (["generate", "-o", "{run}/out.jsonl"], "out.jsonl"),
    "critique": (["critique", "-o", "{run}", "--rounds", "1"], "revisions.jsonl"),
    "label": (["label", "-o", "{run}"], "candidates.jsonl"),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_slow_server_times_out_with_sdk_retries_only(tmp_path, stage):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hello"}\n')
    args, name = STAGES[stage]
    run = tmp_path / "run"
    out = run / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text('{"id": "earlier"}\n')
    cmd = [sys.executable, "-m", "cai", *[a.replace("{run}", str(run)) for a in args], "-p", str(prompts),
           "--max-new-tokens", "4", "--timeout", "0.5", "--max-retries", "1", "--concurrency", "1"]
    with stub_openai(delay=3.0) as (base_url, state):
        cmd += ["--backend", "openai", "--base-url", base_url, "-m", "stub"]
        start = time.monotonic()
        r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
        wall = time.monotonic() - start
        requests = list(state.requests)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and r.stderr.strip().splitlines()[-1] == errors[0]
    assert f"cannot reach OpenAI-compatible server at {base_url}: timed out after 0.5s" in errors[0]
    assert "rerun the same command to resume" in errors[0] and str(out) in errors[0]
    assert len(requests) == 2  # the first try and one SDK retry: no other retry layer
    gap = requests[1]["t"] - requests[0]["t"]
    assert 0.5 <= gap < 3.0  # the retry came after the 0.5 s timeout (+ the SDK's backoff), not after 3 s
    assert wall < 30
    assert out.read_text() == '{"id": "earlier"}\n'


def test_slow_but_within_timeout_completes(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(4)))
    out = tmp_path / "out.jsonl"
    with stub_openai(delay=0.3) as (base_url, state):
        r = subprocess.run(generate_cmd(prompts, out, base_url, "stub", "--timeout", "5",
                                        "--max-retries", "0", "--concurrency", "4"), cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=120)
        requests = list(state.requests)
    assert r.returncode == 0, r.stderr
    assert len(read_records(out, CompletionRecord)) == 4 and len(requests) == 4
    starts = sorted(x["t"] for x in requests)
    assert starts[-1] - starts[0] < 0.3  # all four were in flight together (--concurrency 4)
