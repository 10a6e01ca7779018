"""Re-launch a ``cai train ...`` command through ``accelerate launch``.

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
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cai.core.errors import CaiError

log = logging.getLogger(__name__)

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
PROFILES = ("ddp", "fsdp", "zero3")
CHILD_ENV = "CAI_ACCELERATE_CHILD"
LAUNCH_OPTIONS = ("--accelerate-config", "--num-processes")


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


def is_child() -> bool:
    """Whether this process was started by :func:`relaunch` (so it must not launch again)."""
    return os.environ.get(CHILD_ENV) == "1"


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_config(name_or_path: str, num_processes: int | None, gpus: int) -> dict[str, Any]:
    """The accelerate config to run: the profile with its process count, CPU fallback for ddp.

    >>> cfg = resolve_config("ddp", None, gpus=0)
    >>> cfg["distributed_type"], cfg["num_processes"], cfg["use_cpu"], cfg["mixed_precision"]
    ('MULTI_GPU', 2, True, 'no')
    >>> (resolve_config("ddp", 3, gpus=4)["num_processes"],
    ...  resolve_config("ddp", None, gpus=4)["distributed_type"])
    (3, 'MULTI_GPU')
    """
    path = profile_path(name_or_path)
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CaiError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise CaiError(f"{path}: expected an accelerate config mapping")
    if num_processes is not None and num_processes < 1:
        raise CaiError(f"--num-processes {num_processes} must be at least 1")
    shipped = name_or_path in PROFILES
    if shipped and gpus == 0:
        if name_or_path != "ddp":
            raise CaiError(f"the {name_or_path} profile needs CUDA GPUs and none is visible",
                           hint="use --accelerate-config ddp to test on CPU processes")
        # torchrun-style launch of CPU processes; they join a gloo group (see training_defaults' use_cpu)
        cfg.update(distributed_type="MULTI_GPU", use_cpu=True, mixed_precision="no", gpu_ids="all")
        cfg["num_processes"] = num_processes or 2
    elif shipped:
        cfg["num_processes"] = num_processes or gpus
    elif num_processes is not None:
        cfg["num_processes"] = num_processes
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


def launch_command(config_file: str | os.PathLike, argv: Sequence[str], port: int) -> list[str]:
    """The ``accelerate launch`` command line that runs ``cai <argv>`` in each process.

    >>> launch_command("c.yaml", ["train", "dpo", "--accelerate-config", "ddp"], 1234)[3:]
    ['--config_file', 'c.yaml', '--main_process_port', '1234', '-m', 'cai', 'train', 'dpo']
    """
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", os.fspath(config_file),
            "--main_process_port", str(port), "-m", "cai", *strip_launch_options(argv)]


def relaunch(name_or_path: str, num_processes: int | None = None, argv: Sequence[str] | None = None) -> int:
    """Run the current ``cai`` command again under ``accelerate launch``; return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = resolve_config(name_or_path, num_processes, _gpu_count())
    with tempfile.TemporaryDirectory(prefix="cai-accelerate-") as tmp:
        config_file = Path(tmp) / "accelerate.yaml"
        config_file.write_text(yaml.safe_dump(cfg, sort_keys=True), encoding="utf-8")
        cmd = launch_command(config_file, args, free_port())
        log.info("launching %d %s process(es) through accelerate (%s): cai %s", cfg.get("num_processes", 1),
                 cfg.get("distributed_type"), name_or_path, " ".join(strip_launch_options(args)))
        env = {**os.environ, CHILD_ENV: "1"}
        return subprocess.call(cmd, env=env)


def maybe_relaunch(accelerate_config: str | None, num_processes: int | None = None) -> int | None:
    """Relaunch when ``--accelerate-config`` was given (and this is not already a child); else None."""
    if not accelerate_config or is_child():
        return None
    return relaunch(accelerate_config, num_processes)
