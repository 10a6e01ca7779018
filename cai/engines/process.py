"""One managed inference server: started on loopback, health-checked, logged, and never left behind.

:class:`ManagedServer` runs an argv (from :mod:`cai.engines.commands`) as the leader of its own
process group (``start_new_session``), its stdout and stderr appended to ``log_path`` under a
``$ command`` line. It is ready once ``GET /v1/models`` answers 200 with a model list;
:meth:`ManagedServer.stop` sends SIGTERM to the whole group, then SIGKILL after ``grace`` seconds.
Used as a context manager it stops on exit, on an exception and on Ctrl-C.

No orphans when cai itself dies (SIGKILL included), by two independent guards:

* on Linux the server gets ``PR_SET_PDEATHSIG`` = SIGTERM (``prctl`` through ``ctypes`` in
  ``preexec_fn``; only when started from the main thread, since the signal fires when the
  starting *thread* ends);
* a watchdog process (:mod:`cai.engines.watchdog`) that SIGTERMs and then SIGKILLs the server's whole
  process group, workers included, as soon as cai is gone.

Every failure to start is one :class:`~cai.core.errors.CaiError` line naming the engine, the
command and the log file (:func:`start_error`): program not found, port taken, the process exiting
before it was ready (with the last line of its log), no answer within ``startup_timeout``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from cai.core.errors import CaiError

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1
WATCHDOG = Path(__file__).with_name("watchdog.py")


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` now, as servers bind (``SO_REUSEADDR``: a port whose last
    connections are still in TIME_WAIT, e.g. right after a server stopped, is free; one a server listens on
    is not).

    >>> with socket.socket() as s:
    ...     s.bind(("127.0.0.1", 0)); s.listen(); port_free("127.0.0.1", s.getsockname()[1])
    False
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def resolve_program(argv: Sequence[str]) -> list[str] | None:
    """``argv`` with its program made runnable: ``python`` is this interpreter, a program next to it
    (the same virtual environment) wins over ``PATH``; None when it is nowhere.

    >>> resolve_program(["python", "-V"])[0] == sys.executable
    True
    >>> resolve_program(["no-such-engine-binary-xyz"]) is None
    True
    """
    program, rest = argv[0], list(argv[1:])
    if program == "python":
        return [sys.executable, *rest]
    if os.sep in program:
        return list(argv) if Path(program).exists() else None
    sibling = Path(sys.executable).with_name(program)
    if sibling.exists():
        return [str(sibling), *rest]
    found = shutil.which(program)
    return [found, *rest] if found else None


def last_log_line(path: Path, limit: int = 300) -> str:
    """The last non-empty line of a log (at most ``limit`` characters), or ``""``.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.log"
    >>> _ = p.write_text("$ cmd\\nTraceback...\\nOSError: no such model\\n\\n")
    >>> last_log_line(p)
    'OSError: no such model'
    """
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 8192))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def start_error(engine: str, what: str, argv: Sequence[str], log_path: Path,
                hint: str | None = None) -> CaiError:
    """The one line for a server that could not start.

    >>> print(start_error("vllm", "exited with code 2", ["vllm", "serve", "m"], Path("runs/x/engines/p.log")))
    engine vllm exited with code 2; command: vllm serve m; log: runs/x/engines/p.log
    """
    return CaiError(f"engine {engine} {what}; command: {shlex.join(argv)}; log: {log_path}", hint=hint)


def _pdeathsig_setter():
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when its parent thread ends (else None)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the child only calls it
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return set_pdeathsig


def models_answer(url: str, timeout: float = 2.0) -> list[str] | None:
    """The model ids ``GET url/v1/models`` lists, or None when it does not answer 200 with a list."""
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=timeout) as response:
            if response.status != 200:
                return None
            body = json.loads(response.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    data = body.get("data") if isinstance(body, dict) else None
    return [str(m.get("id")) for m in data if isinstance(m, dict)] if isinstance(data, list) else None


class ManagedServer:
    """A server process for one checkpoint (see the module doc).

    ``engine`` names the kind in messages, ``name`` the server (its log is ``log_path``).
    """

    def __init__(self, argv: Sequence[str], *, engine: str, name: str, log_path: str | os.PathLike[str],
                 port: int, host: str = HOST, startup_timeout: float = 600.0, grace: float = 10.0,
                 env: Mapping[str, str] | None = None, install_hint: str | None = None):
        self.argv, self.engine, self.name = list(argv), engine, name
        self.log_path, self.host, self.port = Path(log_path), host, int(port)
        self.startup_timeout, self.grace = float(startup_timeout), float(grace)
        self.env, self.install_hint = dict(env or {}), install_hint
        self.process: subprocess.Popen | None = None
        self.watchdog: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root clients want."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _error(self, what: str, hint: str | None = None) -> CaiError:
        return start_error(self.engine, what, self.argv, self.log_path, hint)

    def start(self) -> None:
        """Launch the process and its watchdog (does not wait for it to be ready)."""
        argv = resolve_program(self.argv)
        if argv is None:
            raise self._error(f"cannot start: program {self.argv[0]!r} not found", self.install_hint)
        if not port_free(self.host, self.port):
            raise self._error(f"cannot start: port {self.port} on {self.host} is taken",
                              "stop what listens there, or let cai pick a free port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **self.env}
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                                preexec_fn=_pdeathsig_setter())
            except OSError as exc:
                raise self._error(f"cannot start: {exc.strerror or exc}", self.install_hint) from None
        self.watchdog = subprocess.Popen(
            [sys.executable, str(WATCHDOG), str(os.getpid()), str(self.process.pid), str(self.grace)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def wait_ready(self) -> list[str]:
        """Poll ``/v1/models`` until it answers (its model ids); stop the server and raise if it exits first
        or ``startup_timeout`` passes."""
        deadline = time.monotonic() + self.startup_timeout
        pause = 0.1
        while True:
            assert self.process is not None, "start() first"
            code = self.process.poll()
            if code is not None:
                last = last_log_line(self.log_path)
                self.stop()
                raise self._error(f"exited with code {code} before it answered GET /v1/models",
                                  f"read the log; its last line: {last}" if last else self.install_hint)
            models = models_answer(self.url)
            if models is not None and self.process.poll() is None:
                return models
            if time.monotonic() > deadline:
                self.stop()
                waited = f"{self.startup_timeout:g} s"
                raise self._error(f"did not answer GET {self.url}/v1/models within {waited}",
                                  "raise the engine's startup_timeout, or read the log")
            time.sleep(pause)
            pause = min(pause * 1.5, 1.0)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds; reap the leader and the watchdog."""
        proc = self.process
        if proc is not None:
            for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    continue
                if sig == signal.SIGTERM:  # the leader is gone: its workers must not outlive it
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                break
        dog = self.watchdog
        if dog is not None:
            with contextlib.suppress(OSError, ValueError):
                dog.stdin.close()
            try:
                dog.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                dog.kill()
                dog.wait()
        self.watchdog = None

    def __enter__(self) -> ManagedServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
