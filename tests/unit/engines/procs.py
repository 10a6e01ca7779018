"""Process checks for the engine tests: is a pid running, who is in a process group, the fake server."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path

FAKE_SERVER = Path(__file__).with_name("fake_server.py")


def fake_argv(port: int, *flags: str) -> list[str]:
    return [sys.executable, str(FAKE_SERVER), "--port", str(port), *flags]


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()  # after "pid (comm)": state, ppid, pgrp, ...


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[0] != "Z" and int(fields[2]) == pgid:
                out.append(int(entry.name))
    return out


def wait_gone(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """The pids still running after up to ``timeout`` seconds."""
    pids = [p for p in pids if p]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]
