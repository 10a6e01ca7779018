"""A small OpenAI-compatible server process for the engine tests (standard library only, run by path).

``python fake_server.py --host H --port P [--model NAME] [--grandchild] [--ignore-term] [--pidfile F]``
answers ``GET /v1/models`` with ``NAME`` and every chat completion with ``"ok from NAME"``. With
``--grandchild`` it first spawns a process of its own that ignores SIGTERM (a worker that only
SIGKILL stops); on SIGTERM the server exits, as real servers do (``--ignore-term``: it ignores it).
``--pidfile`` gets ``{"server": pid, "grandchild": pid}`` once it listens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WORKER = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="fake")
    ap.add_argument("--grandchild", action="store_true")
    ap.add_argument("--ignore-term", action="store_true")
    ap.add_argument("--pidfile")
    opts = ap.parse_args()
    if opts.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", WORKER]) if opts.grandchild else None

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self._send({"object": "list", "data": [{"id": opts.model, "object": "model"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            text = f"ok from {body.get('model')}"
            self._send({"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}})

        def _send(self, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer((opts.host, opts.port), Handler)
    if opts.pidfile:
        pids = {"server": os.getpid(), "grandchild": child.pid if child else None}
        Path(opts.pidfile).write_text(json.dumps(pids))
    print(f"fake server on {opts.host}:{opts.port}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
