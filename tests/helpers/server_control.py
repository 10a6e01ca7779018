"""Servers the fault tests control: a small OpenAI-compatible stub and kill/restart of ``transformers serve``.

:class:`StubOpenAI` is a real HTTP server on loopback (a thread in the test
process) speaking enough of the chat-completions API for every stage: a
deterministic answer derived from the request, ``logprobs`` when asked (so
``cai label`` scores through it), a 401 that echoes the key it got (as some
servers do) for the model name ``auth``, and an optional delay per request (a
slow server). It records each request's arrival time, model and API key.

:func:`kill` SIGKILLs a :class:`tests.helpers.servers.Server`'s process group (a crash,
not a shutdown); :func:`restart` starts it again on the same port and waits
until it is healthy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers.servers import START_TIMEOUT, Server


@dataclass
class StubState:
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def stub_answer(messages: list[dict[str, Any]], seed: Any) -> str:
    """The stub's deterministic answer: a few words picked by a hash of the request.

    >>> (stub_answer([{"role": "user", "content": "hi"}], 1)
    ...  == stub_answer([{"role": "user", "content": "hi"}], 1))
    True
    """
    words = ["Bread", "needs", "flour", "water", "salt", "and", "time", "I", "cannot", "help", "with", "that"]
    digest = hashlib.sha256(json.dumps([messages, seed], sort_keys=True).encode()).digest()
    return " ".join(words[b % len(words)] for b in digest[:6]) + "."


class _Handler(BaseHTTPRequestHandler):
    state: StubState

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # /v1/models, /health
        self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        with self.state.lock:
            self.state.requests.append({"t": time.monotonic(), "model": body.get("model"), "key": key,
                                        "logprobs": bool(body.get("logprobs"))})
        if self.state.delay:
            time.sleep(self.state.delay)
        if body.get("model") == "auth":
            return self._send(401, {"error": {"message": f"Incorrect API key provided: {key}"}})
        text = stub_answer(body.get("messages", []), body.get("seed"))
        if body.get("max_tokens") == 1:
            text = "("
        logprobs = None
        if body.get("logprobs"):
            lean = int(hashlib.sha256(text.encode()).hexdigest(), 16) % 5 / 10  # a seeded lean to A or B
            top = [{"token": t, "logprob": lp, "bytes": None}
                   for t, lp in (("(", -0.05), ("A", -1.0 - lean), ("B", -1.4 + lean), ("The", -6.0))]
            logprobs = {"content": [{"token": "(", "logprob": -0.05, "bytes": None, "top_logprobs": top}]}
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "finish_reason": "length" if body.get("max_tokens") == 1 else "stop", "logprobs": logprobs}
        self._send(200, {"id": "stub", "object": "chat.completion", "created": 0, "model": body.get("model"),
                         "choices": [choice], "usage": {"prompt_tokens": 5, "completion_tokens": 6,
                                                        "total_tokens": 11}})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


@contextlib.contextmanager
def stub_openai(delay: float = 0.0) -> Iterator[tuple[str, StubState]]:
    """``(base_url, state)`` of a running stub; stopped on exit."""
    state = StubState(delay=delay)
    handler = type("StubHandler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def kill(server: Server) -> None:
    """SIGKILL the server's whole process group (a crash) and reap it."""
    assert server.process is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=30)


def restart(server: Server, timeout: float = START_TIMEOUT) -> None:
    """Start the server again on its port (appending to its log) and wait until it is healthy."""
    deadline = time.monotonic() + timeout
    while True:  # the old socket may linger a moment
        server.start()
        try:
            server.wait_ready(deadline)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            server.stop()
            time.sleep(0.5)
