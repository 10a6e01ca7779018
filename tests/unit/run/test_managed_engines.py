"""``cai run`` with ``engine: {managed: transformers}``: the sampling and eval stages go through servers the
run starts, the records have the local path's schema, and a SIGKILLed ``cai`` leaves no server behind."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from tests.unit.engines.procs import wait_gone
from tests.unit.run.test_stages import build_short_answer_model, cai, statuses, write_recipe

pytestmark = pytest.mark.integration
ENGINE = "{managed: transformers, args: {device: cpu}, startup_timeout: 240, concurrency: 4}"


def sampling_model(path: Path) -> Path:
    """The short-answer tiny model, with ``do_sample`` in its generation config: ``transformers serve``
    (5.24) samples only when the model's config says so and otherwise decodes greedily whatever the
    request's temperature (the README's engines section says so)."""
    build_short_answer_model(path)
    config = json.loads((path / "generation_config.json").read_text())
    (path / "generation_config.json").write_text(json.dumps({**config, "do_sample": True}))
    return path


def managed_recipe(folder: Path, model: Path) -> Path:
    const = folder / "policy.yaml"
    shutil.copy(ROOT / "constitutions" / "harmless.yaml", const)
    path = write_recipe(folder, model, const)
    text = path.read_text().replace(f'model: {{name: "{model}", batch_size: 8}}',
                                    f'model: {{name: "{model}", batch_size: 8, engine: {ENGINE}}}')
    # labels read log-probs: in process. The server's samples are not seeded, and a tiny random feedback model
    # can read two answers as an exact tie (0.5 in both orders), which the label stage drops: keep them, so
    # the run never depends on the draw
    text = text.replace("label: {few_shot: false, pairs_per_call: 4}",
                        f'label: {{few_shot: false, pairs_per_call: 4, keep_ties: true, '
                        f'feedback_model: {{name: "{model}"}}}}')
    text = text.replace("eval:\n", f'eval:\n  feedback_model: {{name: "{model}"}}\n')
    assert text.count("engine:") == 1 and text.count("feedback_model") == 2
    path.write_text(text, encoding="utf-8")
    return path


def servers_of(model: Path) -> list[int]:
    """Pids of live processes serving ``model`` (their command line names it and ``serve``)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and str(model).encode() in argv:
            out.append(int(entry.name))
    return out


def record_keys(path: Path) -> set[tuple[str, ...]]:
    return {tuple(sorted(json.loads(line))) for line in path.read_text().splitlines() if line.strip()}


def test_sampling_and_eval_through_managed_servers_match_the_local_schema(tmp_path):
    model = sampling_model(tmp_path / "model")
    local_dir, served_dir = tmp_path / "local", tmp_path / "served"
    local_dir.mkdir(), served_dir.mkdir()
    const = local_dir / "policy.yaml"
    shutil.copy(ROOT / "constitutions" / "harmless.yaml", const)
    local = cai("run", str(write_recipe(local_dir, model, const)), cwd=local_dir)
    assert local.returncode == 0, local.stderr[-3000:]
    served = cai("run", str(managed_recipe(served_dir, model)), cwd=served_dir)
    assert served.returncode == 0, served.stderr[-3000:]
    assert set(statuses(served.stdout).values()) == {"ran"}, served.stdout
    run, ref = served_dir / "runs" / "tiny", local_dir / "runs" / "tiny"
    logs = sorted(p.name for p in (run / "engines").glob("*.log"))
    assert logs and all("transformers" in n for n in logs), logs
    for rel in ("critique/revisions.jsonl", "answers/candidates.jsonl"):
        assert record_keys(run / rel) == record_keys(ref / rel), rel
    cands = [json.loads(x) for x in (run / "answers" / "candidates.jsonl").read_text().splitlines()]
    assert {c["provenance"]["backend"] for c in cands} == {"openai"}  # through the server, not in process
    summary = json.loads((run / "eval" / "eval.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["base", "trained"]
    assert servers_of(model) == []  # every server stopped with the run


def test_sigkill_of_cai_mid_stage_leaves_no_server(tmp_path):
    model = sampling_model(tmp_path / "model")
    recipe = managed_recipe(tmp_path, model)
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "cai", "run", str(recipe)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not servers_of(model) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        started = servers_of(model)
        assert started, "no server started"
        time.sleep(2)  # mid-stage: the critique stage is sampling through it
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_gone(started, timeout=20) == []
    assert servers_of(model) == []
