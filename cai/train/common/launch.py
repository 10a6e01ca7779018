"""Re-launch a ``cai train ...`` command through ``accelerate launch``, on one machine or several.

``--accelerate-config ddp|fsdp|zero3|PATH`` names a shipped profile
(``cai/train/profiles/*.yaml``) or an accelerate config file. The command then
runs again as ``python -m accelerate.commands.launch --config_file F -m cai
<same arguments minus --accelerate-config>``, once per process; inside, the
trainers see a distributed environment and only the main process writes the
model card.

The number of processes is ``--num-processes N`` if given, else the number of
visible GPUs. Without GPUs the ``ddp`` profile runs CPU processes (gloo) in fp32
(2 processes unless told otherwise), which is how it is tested; ``fsdp`` and
``zero3`` need GPUs.

**Several machines** (``num_machines > 1`` in the config, or ``CAI_NUM_MACHINES``): the
same command runs once per machine (e.g. one ``srun`` task per node) and every machine
must agree on the rendezvous address, so no free port is picked. Each value comes from
the first of (see :data:`NODE_ENV`):

* ``machine_rank``: ``CAI_MACHINE_RANK``, ``SLURM_NODEID``, the config;
* ``main_process_ip``: ``CAI_MAIN_PROCESS_IP``, ``MASTER_ADDR``, the config;
* ``main_process_port``: ``CAI_MAIN_PROCESS_PORT``, ``MASTER_PORT``, the config, 29500.

``num_processes`` counts the processes of all machines (accelerate's meaning): ``--num-processes``,
else the visible GPUs times the machines for a shipped profile, else the config's. ``same_network`` and
``rdzv_backend`` pass through. A process that an outside ``accelerate launch`` (or ``torchrun``)
started never launches again (:func:`is_child`).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from cai.core.errors import CaiError

log = logging.getLogger(__name__)

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
PROFILES = ("ddp", "fsdp", "zero3")
CHILD_ENV = "CAI_ACCELERATE_CHILD"
# set by `accelerate launch` (every launcher) or torchrun in the processes they start
LAUNCHER_ENV = ("ACCELERATE_MIXED_PRECISION", "TORCHELASTIC_RUN_ID")
LAUNCH_OPTIONS = ("--accelerate-config", "--num-processes")
DEFAULT_PORT = 29500
RDZV_BACKENDS = ("static", "c10d", "etcd", "etcd-v2")
# a multi-node config key -> the environment variables that fill it, first set wins (over the config)
NODE_ENV: dict[str, tuple[str, ...]] = {
    "num_machines": ("CAI_NUM_MACHINES",),
    "machine_rank": ("CAI_MACHINE_RANK", "SLURM_NODEID"),
    "main_process_ip": ("CAI_MAIN_PROCESS_IP", "MASTER_ADDR"),
    "main_process_port": ("CAI_MAIN_PROCESS_PORT", "MASTER_PORT"),
}


def profile_path(name_or_path: str) -> Path:
    """The accelerate config file for a shipped profile name or a path.

    >>> profile_path("ddp").name
    'ddp.yaml'
    >>> profile_path("nope")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    cai.core.errors.CaiError: accelerate config 'nope' is neither a shipped profile nor a file (fix: use ddp,
    fsdp, zero3, or the path of an accelerate config YAML)
    """
    if name_or_path in PROFILES:
        return PROFILES_DIR / f"{name_or_path}.yaml"
    p = Path(os.path.expanduser(name_or_path))
    if p.is_file():
        return p
    raise CaiError(f"accelerate config {name_or_path!r} is neither a shipped profile nor a file",
                   hint=f"use {', '.join(PROFILES)}, or the path of an accelerate config YAML")


def strip_launch_options(argv: Sequence[str]) -> list[str]:
    """The command's arguments without ``--accelerate-config``/``--num-processes`` (and their values).

    >>> strip_launch_options(["train", "dpo", "--accelerate-config", "ddp", "--data", "x",
    ...                       "--num-processes=2", "--beta", "0.1"])
    ['train', 'dpo', '--data', 'x', '--beta', '0.1']
    """
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def is_child(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by a launcher (:func:`relaunch`, or an outside ``accelerate
    launch``/``torchrun``, e.g. from a SLURM script), so it must not launch again.

    >>> is_child({}), is_child({"CAI_ACCELERATE_CHILD": "1"}), is_child({"ACCELERATE_MIXED_PRECISION": "no"})
    (False, True, True)
    >>> is_child({"SLURM_NODEID": "1", "MASTER_ADDR": "node0"})  # srun alone is no launcher
    False
    """
    env = os.environ if env is None else env
    return env.get(CHILD_ENV) == "1" or any(k in env for k in LAUNCHER_ENV)


def gpu_count() -> int:
    """The CUDA GPUs this process sees."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def read_config(path: Path) -> dict[str, Any]:
    """An accelerate config file as a mapping (one-line errors)."""
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CaiError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise CaiError(f"{path}: expected an accelerate config mapping")
    return cfg


def _int(value: Any, what: str, where: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high)``, else a one-line error naming ``what`` and ``where``."""
    try:
        n = int(str(value).strip())
    except ValueError:
        raise CaiError(f"{where}: {what} {value!r} is not a whole number",
                       hint=f"set {what} to a number") from None
    if n < low or (high is not None and n >= high):
        bound = f"from {low} to {high - 1}" if high is not None else f"at least {low}"
        raise CaiError(f"{where}: {what} {n} must be {bound}", hint=f"set {what} {bound}")
    return n


def node_settings(cfg: Mapping[str, Any], env: Mapping[str, str], where: str = "accelerate config"
                  ) -> dict[str, Any]:
    """The multi-node keys of ``cfg`` with the environment's values over them; ``{}`` for one machine.

    >>> cfg = {"num_machines": 2, "machine_rank": 0, "main_process_port": 1234}
    >>> node_settings(cfg, {"SLURM_NODEID": "1", "MASTER_ADDR": "node0"})  # doctest: +NORMALIZE_WHITESPACE
    {'num_machines': 2, 'machine_rank': 1, 'main_process_ip': 'node0', 'main_process_port': 1234}
    >>> node_settings({"num_machines": 1}, {"SLURM_NODEID": "3"}), node_settings({}, {})
    ({}, {})
    >>> node_settings(cfg, {"SLURM_NODEID": "1"})  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    cai.core.errors.CaiError: accelerate config: num_machines 2 needs main_process_ip, the address of
    machine 0 (fix: set main_process_ip in the config, or export MASTER_ADDR (or CAI_MAIN_PROCESS_IP) on
    every machine)
    """
    def pick(key: str) -> tuple[Any, str]:
        for name in NODE_ENV[key]:
            if env.get(name, "").strip():
                return env[name].strip(), name
        return cfg.get(key), key

    raw, src = pick("num_machines")
    machines = _int(raw if raw is not None else 1, "num_machines", f"{where} ({src})", 1)
    if machines == 1:
        return {}
    rank, rank_src = pick("machine_rank")
    if rank is None:
        raise CaiError(f"{where}: num_machines {machines} needs machine_rank, this machine's number",
                       hint="set machine_rank, or export SLURM_NODEID (srun does) or CAI_MACHINE_RANK")
    ip, _ = pick("main_process_ip")
    if ip is None or not str(ip).strip():
        raise CaiError(f"{where}: num_machines {machines} needs main_process_ip, the address of machine 0",
                       hint="set main_process_ip in the config, or export MASTER_ADDR (or "
                            "CAI_MAIN_PROCESS_IP) on every machine")
    port, port_src = pick("main_process_port")
    out = {"num_machines": machines,
           "machine_rank": _int(rank, "machine_rank", f"{where} ({rank_src})", 0, machines),
           "main_process_ip": str(ip).strip(),
           "main_process_port": _int(DEFAULT_PORT if port is None else port, "main_process_port",
                                     f"{where} ({port_src})", 1, 65536)}
    backend = cfg.get("rdzv_backend", "static")
    if backend not in RDZV_BACKENDS:
        raise CaiError(f"{where}: rdzv_backend {backend!r} is not one of {', '.join(RDZV_BACKENDS)}",
                       hint="use static (every machine given its machine_rank) or c10d")
    if not isinstance(cfg.get("same_network", True), bool):
        raise CaiError(f"{where}: same_network {cfg['same_network']!r} is not true or false",
                       hint="same_network: true when the machines share a network")
    return out


def resolve_config(name_or_path: str, num_processes: int | None, gpus: int,
                   env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The accelerate config to run: the profile with its process count, CPU fallback for ddp, and the
    machine's multi-node settings (:func:`node_settings`).

    >>> cfg = resolve_config("ddp", None, gpus=0, env={})
    >>> cfg["distributed_type"], cfg["num_processes"], cfg["use_cpu"], cfg["mixed_precision"]
    ('MULTI_GPU', 2, True, 'no')
    >>> (resolve_config("ddp", 3, gpus=4, env={})["num_processes"],
    ...  resolve_config("ddp", None, gpus=4, env={})["distributed_type"])
    (3, 'MULTI_GPU')
    >>> two = resolve_config("ddp", None, gpus=4, env={"CAI_NUM_MACHINES": "2", "SLURM_NODEID": "1",
    ...                                                  "MASTER_ADDR": "10.0.0.1"})
    >>> two["num_processes"], two["num_machines"], two["machine_rank"], two["main_process_port"]
    (8, 2, 1, 29500)
    """
    env = os.environ if env is None else env
    path = profile_path(name_or_path)
    cfg = read_config(path)
    if num_processes is not None and num_processes < 1:
        raise CaiError(f"--num-processes {num_processes} must be at least 1")
    nodes = node_settings(cfg, env, str(path))
    machines = nodes.get("num_machines", 1)
    shipped = name_or_path in PROFILES
    if shipped and gpus == 0:
        if name_or_path != "ddp":
            raise CaiError(f"the {name_or_path} profile needs CUDA GPUs and none is visible",
                           hint="use the ddp profile to test on CPU processes")
        # torchrun-style launch of CPU processes; they join a gloo group (see training_defaults' use_cpu)
        cfg.update(distributed_type="MULTI_GPU", use_cpu=True, mixed_precision="no", gpu_ids="all")
        cfg["num_processes"] = num_processes or 2 * machines
    elif shipped:
        cfg["num_processes"] = num_processes or gpus * machines
    elif num_processes is not None:
        cfg["num_processes"] = num_processes
    if machines > 1 and int(cfg.get("num_processes") or 1) < machines:
        raise CaiError(f"{path}: num_processes {cfg.get('num_processes')} is fewer than num_machines "
                       f"{machines} (num_processes counts the processes of all machines)",
                       hint="pass --num-processes MACHINES x GPUS_PER_MACHINE")
    cfg.update(nodes)
    if shipped and name_or_path == "zero3":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise CaiError("the zero3 profile needs DeepSpeed",
                           hint="pip install deepspeed, or use ddp or fsdp")
    return cfg


def free_port() -> int:
    """A TCP port free on loopback right now (for the processes' rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(config_file: str | os.PathLike, argv: Sequence[str], port: int | None) -> list[str]:
    """The ``accelerate launch`` command line that runs ``cai <argv>`` in each process; ``port`` None
    (several machines) leaves the rendezvous port to the config file, which every machine shares.

    >>> launch_command("c.yaml", ["train", "dpo", "--accelerate-config", "ddp"], 1234)[3:]
    ['--config_file', 'c.yaml', '--main_process_port', '1234', '-m', 'cai', 'train', 'dpo']
    >>> launch_command("c.yaml", ["train", "dpo"], None)[3:]
    ['--config_file', 'c.yaml', '-m', 'cai', 'train', 'dpo']
    """
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", os.fspath(config_file),
            *(["--main_process_port", str(port)] if port is not None else []),
            "-m", "cai", *strip_launch_options(argv)]


def relaunch(name_or_path: str, num_processes: int | None = None, argv: Sequence[str] | None = None) -> int:
    """Run the current ``cai`` command again under ``accelerate launch``; return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = resolve_config(name_or_path, num_processes, gpu_count())
    machines = int(cfg.get("num_machines") or 1)
    with tempfile.TemporaryDirectory(prefix="cai-accelerate-") as tmp:
        config_file = Path(tmp) / "accelerate.yaml"
        config_file.write_text(yaml.safe_dump(cfg, sort_keys=True), encoding="utf-8")
        cmd = launch_command(config_file, args, free_port() if machines == 1 else None)
        where = (f" on machine {cfg['machine_rank']} of {machines} (main {cfg['main_process_ip']}:"
                 f"{cfg['main_process_port']})" if machines > 1 else "")
        log.info("launching %d %s process(es)%s through accelerate (%s): cai %s", cfg.get("num_processes", 1),
                 cfg.get("distributed_type"), where, name_or_path, " ".join(strip_launch_options(args)))
        env = {**os.environ, CHILD_ENV: "1"}
        return subprocess.call(cmd, env=env)


def maybe_relaunch(accelerate_config: str | None, num_processes: int | None = None) -> int | None:
    """Relaunch when ``--accelerate-config`` was given (and this is not already a child); else None."""
    if not accelerate_config or is_child():
        return None
    return relaunch(accelerate_config, num_processes)
