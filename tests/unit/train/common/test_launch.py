"""`--accelerate-config` re-launches the command through `accelerate launch`: DPO on 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cai.core.errors import CaiError
from tests.helpers.data import write_toy_prefs
from tests.helpers.paths import ROOT


def test_dpo_under_accelerate_launch_with_two_cpu_processes(tiny_model_dir, tmp_path):
    data = write_toy_prefs(tmp_path / "prefs.jsonl", 16)
    out = tmp_path / "dpo-ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "cai", "train", "dpo", "--data", str(data), "--model", str(tiny_model_dir),
         "--output", str(out), "--soft-labels", "--max-steps", "2", "--batch-size", "2",
         "--set", "disable_tqdm=true", "--set", "save_strategy=no",
         "--accelerate-config", "ddp", "--num-processes", "2"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "launching 2" in r.stderr
    facts = json.loads((out / "cai_card.json").read_text())
    assert facts["notes"]["processes"] == 2  # the Trainer saw a 2-process group, not two lone runs
    assert facts["metrics"]["global_step"] == 2
    assert (out / "model.safetensors").is_file()
    # Only rank 0 logs at INFO: the start line appears once.
    assert r.stderr.count("DPO with soft labels on") == 1


@pytest.mark.integration  # a second 2-process launch (~15 s idle, ~60 s on busy cores)
def test_relaunch_failure_exit_code_passes_through(tiny_model_dir, tmp_path):
    """A user error inside the launched processes is still a non-zero exit with the one-line error."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q"}\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "cai", "train", "dpo", "--data", str(bad), "--model", str(tiny_model_dir),
         "--output", str(tmp_path / "o"), "--accelerate-config", "ddp", "--num-processes", "2"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode != 0
    assert "error: " in r.stderr and "bad.jsonl:1: chosen" in r.stderr


# ------------------------------------------------------------------ several machines (pure functions)
def _config(tmp_path, **keys):
    import yaml

    p = tmp_path / "multi.yaml"
    p.write_text(yaml.safe_dump({"distributed_type": "MULTI_GPU", "num_processes": 16, **keys}))
    return str(p)


def test_multi_node_values_come_from_the_environment_over_the_config(tmp_path):
    from cai.train.common.launch import resolve_config

    path = _config(tmp_path, num_machines=2, machine_rank=0, main_process_ip="10.0.0.9",
                   main_process_port=1111)
    assert {k: resolve_config(path, None, gpus=8, env={})[k] for k in
            ("num_machines", "machine_rank", "main_process_ip", "main_process_port", "num_processes")} == {
        "num_machines": 2, "machine_rank": 0, "main_process_ip": "10.0.0.9", "main_process_port": 1111,
        "num_processes": 16}
    slurm = {"SLURM_NODEID": "1", "MASTER_ADDR": "gpu01", "MASTER_PORT": "2222"}
    cfg = resolve_config(path, None, gpus=8, env=slurm)
    assert (cfg["machine_rank"], cfg["main_process_ip"], cfg["main_process_port"]) == (1, "gpu01", 2222)
    cai = {**slurm, "CAI_MACHINE_RANK": "0", "CAI_MAIN_PROCESS_IP": "h0", "CAI_MAIN_PROCESS_PORT": "3333"}
    cfg = resolve_config(path, None, gpus=8, env=cai)  # CAI_* first
    assert (cfg["machine_rank"], cfg["main_process_ip"], cfg["main_process_port"]) == (0, "h0", 3333)
    # the port defaults to accelerate's 29500, never a free local one: every machine must agree
    assert resolve_config(_config(tmp_path, num_machines=2), None, 8, env=slurm | {"MASTER_PORT": ""})[
        "main_process_port"] == 29500
    # a shipped profile on several machines (CAI_NUM_MACHINES): processes = GPUs per machine x machines
    cfg = resolve_config("ddp", None, gpus=4, env={**slurm, "CAI_NUM_MACHINES": "3"})
    assert (cfg["num_machines"], cfg["num_processes"]) == (3, 12)
    # one machine: SLURM's variables change nothing
    one = resolve_config("ddp", None, gpus=4, env=slurm)
    assert one["num_machines"] == 1 and one["machine_rank"] == 0 and "main_process_ip" not in one


def test_multi_node_config_errors_are_one_line(tmp_path):
    from cai.train.common.launch import resolve_config

    slurm = {"SLURM_NODEID": "1", "MASTER_ADDR": "gpu01"}
    cases = [
        ({"num_machines": 2}, {"SLURM_NODEID": "1"}, "needs main_process_ip"),
        ({"num_machines": 2}, {"MASTER_ADDR": "gpu01"}, "needs machine_rank"),
        ({"num_machines": 2}, {**slurm, "SLURM_NODEID": "2"}, "machine_rank 2 must be from 0 to 1"),
        ({"num_machines": 2}, {**slurm, "MASTER_PORT": "http"}, "main_process_port 'http' is not a whole"),
        ({"num_machines": 2}, {**slurm, "MASTER_PORT": "70000"}, "main_process_port 70000 must be from 1"),
        ({"num_machines": "two"}, slurm, "num_machines 'two' is not a whole number"),
        ({"num_machines": 2, "rdzv_backend": "zmq"}, slurm, "rdzv_backend 'zmq' is not one of static"),
        ({"num_machines": 2, "same_network": "yes"}, slurm, "same_network 'yes' is not true or false"),
        ({"num_machines": 4, "num_processes": 2}, slurm, "num_processes 2 is fewer than num_machines 4"),
    ]
    for keys, env, needle in cases:
        with pytest.raises(CaiError) as err:
            resolve_config(_config(tmp_path, **keys), None, gpus=8, env=env)
        assert needle in err.value.message and "\n" not in str(err.value), (needle, str(err.value))


def test_launch_command_leaves_the_port_to_a_multi_node_config():
    from cai.train.common.launch import launch_command

    one = launch_command("c.yaml", ["train", "dpo", "--accelerate-config", "x.yaml"], 4321)
    many = launch_command("c.yaml", ["train", "dpo", "--accelerate-config", "x.yaml"], None)
    assert one[3:7] == ["--config_file", "c.yaml", "--main_process_port", "4321"]
    assert "--main_process_port" not in many and many[-4:] == ["-m", "cai", "train", "dpo"]


def test_a_process_started_by_an_outside_launcher_does_not_launch_again(monkeypatch):
    from cai.train.common import launch

    for k in ("CAI_ACCELERATE_CHILD", *launch.LAUNCHER_ENV):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(launch, "relaunch", lambda *a, **k: 7)
    assert launch.maybe_relaunch("ddp") == 7
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch` sets in its children
    assert launch.maybe_relaunch("ddp") is None
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")  # torchrun's
    assert launch.maybe_relaunch("ddp") is None


@pytest.mark.integration  # two 1-process "machines" on loopback (~15 s idle)
def test_two_machines_on_loopback_form_one_process_group(tiny_model_dir, tmp_path):
    """The multi-node path end to end: two `cai train --accelerate-config ddp` commands, machine rank 0 and 1
    from the environment, meet at one address and train as one 2-process group."""
    from cai.train.common.launch import free_port

    data, out, port = write_toy_prefs(tmp_path / "prefs.jsonl", 16), tmp_path / "dpo", str(free_port())
    argv = [sys.executable, "-m", "cai", "train", "dpo", "--data", str(data), "--model", str(tiny_model_dir),
            "--output", str(out), "--soft-labels", "--max-steps", "2", "--batch-size", "2",
            "--set", "disable_tqdm=true", "--set", "save_strategy=no", "--accelerate-config", "ddp",
            "--num-processes", "2"]
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                                   "CAI_NUM_MACHINES": "2", "CAI_MACHINE_RANK": str(rank),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
             for rank in (0, 1)]
    logs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert f"on machine 0 of 2 (main 127.0.0.1:{port})" in logs[0] and "on machine 1 of 2" in logs[1]
    facts = json.loads((out / "cai_card.json").read_text())
    assert facts["notes"]["processes"] == 2 and facts["metrics"]["global_step"] == 2
