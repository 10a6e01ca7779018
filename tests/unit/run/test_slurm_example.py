"""examples/slurm/: the sbatch script's command lines under a fake SLURM (stub srun, scontrol, cai,
accelerate).

Nothing is trained: the stubs log their arguments; each node's `accelerate launch` line is then parsed by
accelerate's own argument parser.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from tests.helpers.paths import ROOT

SLURM = ROOT / "examples" / "slurm"
# what the stub `cai run --train-argv` prints: shell-quoted, one argument with a space in it
TRAIN = ["train", "dpo", "--data", "/runs/g/label/preferences.jsonl", "--model", "/runs/g/sft/model",
         "--output", "/runs/g/policy/model", "--soft-labels", "--set", "run_name=my run"]


def _stub(bin_dir: Path, name: str, body: str) -> None:
    p = bin_dir / name
    p.write_text("#!/bin/bash\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)


def _fake_slurm(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    import shlex

    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    py = "import json,sys; print(json.dumps(sys.argv[1:]))"
    record = f'python3 -c {shlex.quote(py)} "$@" >> {log}\n'
    _stub(bin_dir, "scontrol", 'printf "gpu01\\ngpu02\\n"\n')
    # srun: drop its own options, then run the command once per node with that node's SLURM_NODEID
    _stub(bin_dir, "srun", record + 'while [[ "$1" == --* ]]; do shift; done\n'
          'for ((i = 0; i < SLURM_NNODES; i++)); do SLURM_NODEID=$i "$@" || exit $?; done\n')
    printed = shlex.quote(shlex.join(TRAIN))
    _stub(bin_dir, "cai", record + f'[[ " $* " == *" --train-argv "* ]] && echo {printed}\nexit 0\n')
    _stub(bin_dir, "accelerate", f'echo "node $SLURM_NODEID" >> {log}.nodes\n' + record)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu[01-02]",
           "SLURM_NNODES": "2", "SLURM_SUBMIT_DIR": str(ROOT), "RECIPE": "examples/recipes/gpu-7b-vllm.yaml",
           "GPUS_PER_NODE": "8"}
    for k in ("MASTER_ADDR", "MASTER_PORT", "VARIANT", "CAI", "ACCELERATE", "CAI_SLURM_DIR"):
        env.pop(k, None)
    return log, env


def test_sbatch_script_launches_one_accelerate_per_node(tmp_path):
    from accelerate.commands.launch import launch_command_parser

    log, env = _fake_slurm(tmp_path)
    r = subprocess.run(["bash", str(SLURM / "train-stage.sbatch")], env=env, capture_output=True, text=True,
                       cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    cai_calls = [c for c in calls if c[:1] == ["run"]]
    assert cai_calls == [["run", "examples/recipes/gpu-7b-vllm.yaml", "--train-argv", "policy"],
                         ["run", "examples/recipes/gpu-7b-vllm.yaml", "--mark-trained", "policy"]]
    srun = calls[1]
    assert srun[:3] == ["--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert srun[3:5] == ["bash", str(SLURM / "launch-node.sh")] and srun[5:] == TRAIN
    launches = [c for c in calls if c[:1] == ["launch"]]
    assert len(launches) == 2
    for rank, argv in enumerate(launches):
        args = launch_command_parser().parse_args(argv[1:])  # accelerate's own parser takes the line
        assert (args.num_machines, args.machine_rank, args.main_process_ip, args.main_process_port,
                args.num_processes) == (2, rank, "gpu01", 29500, 16)
        assert args.config_file == str(SLURM / "multi-node.yaml")
        assert args.module and args.training_script == "cai" and args.training_script_args == TRAIN
    assert "2 node(s) x 8 GPU(s), main gpu01:29500" in r.stdout


def test_sbatch_script_stops_when_the_stage_is_not_ready(tmp_path):
    log, env = _fake_slurm(tmp_path)
    (tmp_path / "bin" / "cai").write_text("#!/bin/bash\necho 'error: policy needs label finished' >&2\n"
                                          "exit 2\n")
    env["MASTER_PORT"], env["VARIANT"] = "31000", "eu"
    r = subprocess.run(["bash", str(SLURM / "train-stage.sbatch")], env=env, capture_output=True, text=True,
                       cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and "policy needs label finished" in r.stderr
    assert not log.exists()  # no srun, no launch


def test_multi_node_config_resolves_from_the_slurm_environment():
    """The same file works with `cai train --accelerate-config` under srun: cai fills the node settings."""
    from cai.train.common.launch import resolve_config

    env = {"CAI_NUM_MACHINES": "4", "SLURM_NODEID": "3", "MASTER_ADDR": "gpu01", "MASTER_PORT": "31000"}
    cfg = resolve_config(str(SLURM / "multi-node.yaml"), 32, gpus=8, env=env)
    assert (cfg["num_machines"], cfg["machine_rank"], cfg["main_process_ip"], cfg["main_process_port"],
            cfg["num_processes"], cfg["distributed_type"]) == (4, 3, "gpu01", 31000, 32, "DEEPSPEED")
