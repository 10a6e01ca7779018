"""Start and stop real ``transformers serve`` processes on loopback for tests.

``transformers_servers(model_dir, count)`` is a context manager that starts
``count`` servers at once (each on a free port, in its own process group, its
output in a temp log file), waits for every ``/health`` to answer, yields
:class:`Server` handles and kills the process groups on exit. A server that
exits or does not come up in time raises :class:`ServerError` with the tail of
its log. :func:`server_fixture` wraps it as a pytest fixture that also prints
the logs when a test that used the servers failed::

    server = server_fixture(lambda request: request.getfixturevalue("tiny_model_dir"))

    def test_x(server):
        OpenAIBackend(server.model, server.base_url)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 120.0
LOG_TAIL_CHARS = 6000


class ServerError(RuntimeError):
    """A test server did not start."""


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def transformers_command() -> list[str]:
    """The ``transformers`` CLI of the running interpreter's environment."""
    local = Path(sys.executable).with_name("transformers")
    if local.exists():
        return [str(local)]
    found = shutil.which("transformers")
    if found:
        return [found]
    return [
        sys.executable,
        "-c",
        "import sys; from transformers.cli.transformers import main; sys.exit(main())",
    ]


@dataclass
class Server:
    """One server process. ``model`` is the name to send in requests."""

    model: str
    port: int
    log_path: Path
    process: subprocess.Popen | None = None
    host: str = HOST
    extra_args: Sequence[str] = field(default_factory=tuple)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, as clients want it."""
        return f"{self.url}/v1"

    def start(self, env: dict[str, str] | None = None) -> None:
        cmd = [
            *transformers_command(),
            "serve",
            self.model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--device",
            "cpu",
            "--dtype",
            "float32",
            *self.extra_args,
        ]
        server_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        with open(self.log_path, "wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_env,
                start_new_session=True,  # its own process group, killed as one
            )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, deadline: float) -> None:
        """Poll ``/health`` until it answers 200; raise with the log if the process dies or time runs out."""
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ServerError(
                    f"transformers serve exited with code {code} before it was ready\n{self.log_tail()}"
                )
            if self.healthy():
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"transformers serve not healthy at {self.url}/health in time\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        head = f"--- log of {self.url} ({self.log_path}) ---\n"
        return head + (text if len(text) <= chars else "..." + text[-chars:])

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the process group, then kill it if it lingers."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


@contextlib.contextmanager
def transformers_servers(
    model: str | os.PathLike[str],
    count: int = 1,
    *,
    timeout: float = START_TIMEOUT,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
) -> Iterator[list[Server]]:
    """Start ``count`` servers of ``model`` in parallel and yield them once all are healthy.

    On an error in the ``with`` body the servers' log tails go to stderr. Logs go
    to ``log_dir``, or to a temp dir that is removed afterwards unless something
    failed.
    """
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="cai-serve-"))
    servers: list[Server] = []
    failed = False
    try:
        for _ in range(count):
            port = free_port()
            server = Server(str(model), port, logs / f"serve-{port}.log", extra_args=tuple(extra_args))
            servers.append(server)
            server.start(env)
        deadline = time.monotonic() + timeout
        for server in servers:
            server.wait_ready(deadline)
        yield servers
    except BaseException as exc:
        failed = True
        if not isinstance(exc, ServerError):
            for server in servers:
                print(server.log_tail(), file=sys.stderr)
        raise
    finally:
        for server in servers:
            server.stop()
        if not log_dir and not failed:  # keep the logs of a failure for a post-mortem
            shutil.rmtree(logs, ignore_errors=True)


@contextlib.contextmanager
def transformers_server(model: str | os.PathLike[str], **kwargs) -> Iterator[Server]:
    """One server: ``with transformers_server(model_dir) as server: ... server.base_url``."""
    with transformers_servers(model, 1, **kwargs) as servers:
        yield servers[0]


def server_fixture(
    model: Callable[[pytest.FixtureRequest], str | os.PathLike[str]],
    count: int = 1,
    *,
    scope: str = "module",
    **kwargs,
):
    """A pytest fixture yielding one :class:`Server` (``count == 1``) or a list of them.

    ``model`` maps the fixture request to the model to serve (e.g.
    ``lambda r: r.getfixturevalue("tiny_model_dir")``). If any test failed while
    the servers were up, their log tails are written to the terminal at teardown.
    """

    @pytest.fixture(scope=scope)
    def _fixture(request: pytest.FixtureRequest):
        failed_before = request.session.testsfailed
        with transformers_servers(model(request), count, **kwargs) as servers:
            yield servers[0] if count == 1 else servers
            if request.session.testsfailed > failed_before:
                report_logs(request, servers)

    return _fixture


def report_logs(request: pytest.FixtureRequest, servers: Sequence[Server]) -> None:
    """Write the servers' log tails to the terminal (past output capture)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for server in servers:
        if reporter is not None:
            reporter.write_sep("-", f"transformers serve log ({server.url})")
            reporter.write_line(server.log_tail())
        else:
            print(server.log_tail(), file=sys.__stderr__)
