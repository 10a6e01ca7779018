"""Kill a server's whole process group when the process that started it goes away.

Run by :class:`cai.engines.process.ManagedServer` as ``python watchdog.py PARENT_PID PGID GRACE`` (by
file path, standard library only, so it starts in milliseconds), with its stdin a pipe whose other
end only the parent holds. It returns as soon as the group is gone (the server was stopped the
normal way). When the parent dies, by any signal including SIGKILL, the pipe reads EOF (or the
watchdog's parent pid changes, for a parent whose forked children keep the pipe open): it then sends
SIGTERM to the group, waits up to GRACE seconds, and sends SIGKILL to what is left. The group holds
the server and everything it spawned (vLLM's workers, for instance), unless one of them starts a
session of its own.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

POLL_S = 0.25


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the group (``killpg`` with signal 0 only checks).

    >>> group_alive(2**22 + 12345)  # no such group
    False
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, wait up to ``grace`` seconds for it to go, then SIGKILL it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.05)


def parent_gone(parent: int, stdin_fd: int | None) -> bool:
    """Whether the watched parent has died: EOF on the pipe it holds, or a new parent pid (reparenting)."""
    if os.getppid() != parent:
        return True
    if stdin_fd is None:
        time.sleep(POLL_S)
        return False
    readable, _, _ = select.select([stdin_fd], [], [], POLL_S)
    return bool(readable) and not os.read(stdin_fd, 4096)


def main(argv: list[str]) -> int:
    parent, pgid, grace = int(argv[0]), int(argv[1]), float(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for cai, which stops the server itself
    fd: int | None = sys.stdin.fileno() if sys.stdin is not None else None
    while group_alive(pgid):
        if parent_gone(parent, fd):
            kill_group(pgid, grace)
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
