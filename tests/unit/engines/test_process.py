"""A managed server with real processes: ready, logged, stopped with its whole group, one-line errors, and
no orphans when the process that started it is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cai.core.errors import CaiError
from cai.engines.process import ManagedServer, free_port
from tests.helpers.paths import ROOT
from tests.unit.engines.procs import FAKE_SERVER, alive, fake_argv, group_members, wait_gone


def server(argv, tmp_path, port, **kw) -> ManagedServer:
    return ManagedServer(argv, engine=kw.pop("engine", "fake"), name="policy",
                         log_path=tmp_path / "engines" / "policy.log", port=port, **kw)


def read_pids(path: Path, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return json.loads(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"no pid file at {path}")


def test_ready_logged_and_stopped_with_its_grandchild(tmp_path):
    port = free_port()
    pidfile = tmp_path / "pids.json"
    with server(fake_argv(port, "--grandchild", "--pidfile", str(pidfile)), tmp_path, port, grace=1) as s:
        assert s.running and s.base_url == f"http://127.0.0.1:{port}/v1"
        pids = read_pids(pidfile)
        assert sorted(group_members(s.process.pid)) == sorted(pids.values())  # one group, leader + worker
    assert wait_gone(pids.values(), 5) == []  # the worker ignores SIGTERM: the group's SIGKILL got it
    log = (tmp_path / "engines" / "policy.log").read_text()
    assert log.startswith(f"\n$ {sys.executable} {FAKE_SERVER}") and f"fake server on 127.0.0.1:{port}" in log


def test_an_exception_inside_stops_it(tmp_path):
    port = free_port()
    with pytest.raises(RuntimeError), server(fake_argv(port), tmp_path, port) as s:
        pid = s.process.pid
        raise RuntimeError("stage failed")
    assert wait_gone([pid], 5) == []


def test_a_server_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    port = free_port()
    s = server(fake_argv(port, "--ignore-term"), tmp_path, port, grace=0.5)
    with s:
        pid = s.process.pid
    assert not alive(pid)


def test_missing_program_names_engine_command_and_log(tmp_path):
    s = server(["no-such-engine-xyz", "serve", "m"], tmp_path, free_port(), engine="vllm",
               install_hint="pip install vllm")
    with pytest.raises(CaiError) as err:
        s.start()
    msg = str(err.value)
    assert msg.startswith("engine vllm cannot start: program 'no-such-engine-xyz' not found;")
    assert "command: no-such-engine-xyz serve m" in msg and str(tmp_path / "engines" / "policy.log") in msg
    assert "(fix: pip install vllm)" in msg and "\n" not in msg


def test_early_exit_reports_the_code_and_the_last_log_line(tmp_path):
    code = "import sys; print('ValueError: bad argument --max-model-len'); sys.exit(3)"
    argv = [sys.executable, "-c", code]
    with pytest.raises(CaiError) as err, server(argv, tmp_path, free_port(), engine="sglang"):
        pass
    msg = str(err.value)
    assert msg.startswith("engine sglang exited with code 3 before it answered GET /v1/models; command: ")
    assert "log: " + str(tmp_path / "engines" / "policy.log") in msg
    assert "read the log; its last line: ValueError: bad argument --max-model-len" in msg


def test_port_taken(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(CaiError, match=rf"engine fake cannot start: port {port} on 127.0.0.1 is taken; "
                                           r"command: .*; log: "):
            server(fake_argv(port), tmp_path, port).start()


def test_health_check_timeout_stops_the_server(tmp_path):
    port = free_port()  # http.server answers 404 on /v1/models: never ready
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    s = server(argv, tmp_path, port, engine="llama-server", startup_timeout=1.5)
    with pytest.raises(CaiError, match=rf"engine llama-server did not answer GET http://127.0.0.1:{port}/v1/"
                                       r"models within 1.5 s; command: .*http.server.*; log: "):
        with s:
            pass
    assert not s.running and not alive(s.process.pid)


# ----- no orphans -------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, sys, threading, time
    sys.path.insert(0, {root!r})
    from cai.engines.process import ManagedServer
    argv, log, port, in_thread = json.loads(sys.argv[1])
    def run():
        server = ManagedServer(argv, engine="fake", name="policy", log_path=log, port=port, grace=1.0)
        server.__enter__()
        print(json.dumps({{"watchdog": server.watchdog.pid}}), flush=True)
    if in_thread:  # no parent-death signal from a thread: only the watchdog guards
        t = threading.Thread(target=run); t.start(); t.join()
    else:
        run()
    time.sleep(600)
""")


def start_cai_like(tmp_path, in_thread: bool) -> tuple[subprocess.Popen, dict]:
    port = free_port()
    pidfile = tmp_path / "pids.json"
    argv = fake_argv(port, "--grandchild", "--pidfile", str(pidfile))
    spec = json.dumps([argv, str(tmp_path / "policy.log"), port, in_thread])
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT)), spec],
                             stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    assert line, "the child did not start the server"
    return child, {**read_pids(pidfile), **json.loads(line)}


@pytest.mark.parametrize("in_thread", [False, True], ids=["main-thread", "watchdog-only"])
def test_sigkill_of_the_starting_process_leaves_no_server(tmp_path, in_thread):
    child, pids = start_cai_like(tmp_path, in_thread)
    assert all(alive(p) for p in pids.values())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert wait_gone([pids["server"], pids["grandchild"], pids["watchdog"]], 8) == []


def test_pdeathsig_alone_stops_the_server(tmp_path):
    """With the watchdog gone too, the parent-death signal still ends the server (which stops its worker)."""
    child, pids = start_cai_like(tmp_path, in_thread=False)
    os.kill(pids["watchdog"], signal.SIGKILL)
    assert wait_gone([pids["watchdog"]], 5) == []
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert wait_gone([pids["server"]], 8) == []
    os.kill(pids["grandchild"], signal.SIGKILL)  # it ignores SIGTERM and nobody killed the group: clean up
