"""Managed servers across a run's stages: start one per checkpoint, reuse it while it is the same.

A stage asks :meth:`EngineManager.backend_spec` for a *slot* (the model role that needs it:
``policy``, ``feedback``, ``eval``...), an engine kind and a
:class:`~cai.engines.commands.Checkpoint`. The manager

* returns the running server's spec when a server for the same kind and checkpoint (model,
  adapters, args) is up, whichever slot started it;
* otherwise stops the slot's previous server (unless another slot still uses it), starts a new one
  on a free loopback port, logs it to ``run_dir/engines/<slot>-<kind>.log`` and waits until it
  answers ``/v1/models``;
* gives back an ``openai`` :class:`~cai.backends.spec.BackendSpec` pointing at it, so the stage
  talks to the server through the ordinary OpenAI backend.

:meth:`EngineManager.close` (or leaving its ``with`` block, by any exception or Ctrl-C) stops every
server; SIGKILL of the process is covered by :mod:`cai.engines.process`'s watchdog.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.backends.spec import BackendSpec
from cai.core.errors import CaiError
from cai.engines.commands import COMMANDS, INSTALL_HINTS, Checkpoint, launch_command, request_model
from cai.engines.process import HOST, ManagedServer, free_port, start_error

log = logging.getLogger(__name__)

Builder = Callable[[Checkpoint, str, int], list[str]]
# Kinds whose /v1/models lists the exact name requests carry (SGLang routes "base:adapter", llama-server
# answers any name).
LISTS_REQUEST_MODEL = ("vllm", "transformers")


def looks_local(path: str) -> bool:
    """Whether a model reference must be a local path (absolute, ``./``, ``../`` or ``~``), not a hub id.

    >>> looks_local("/runs/x/sft"), looks_local("./sft"), looks_local("Qwen/Qwen2.5-0.5B-Instruct")
    (True, True, False)
    """
    return os.path.isabs(path) or path.startswith(("./", "../", "~"))


def missing_paths(ck: Checkpoint) -> list[str]:
    """The checkpoint's local paths (model, adapters) that do not exist.

    >>> missing_paths(Checkpoint("/no/such/model", adapters=(("a", "Org/adapter"),)))
    ['/no/such/model']
    """
    refs = [ck.model, *(p for _, p in ck.adapters)]
    return [r for r in refs if looks_local(r) and not Path(os.path.expanduser(r)).exists()]


@dataclass
class Running:
    """A started server, its kind and checkpoint, and the spec stages use."""

    kind: str
    checkpoint: Checkpoint
    server: ManagedServer
    spec: BackendSpec


class EngineManager:
    """Managed servers of one run (see the module doc). ``commands`` maps kinds to argv builders."""

    def __init__(self, run_dir: str | os.PathLike[str], *, host: str = HOST, startup_timeout: float = 600.0,
                 grace: float = 10.0, commands: Mapping[str, Builder] | None = None,
                 env: Mapping[str, str] | None = None):
        self.log_dir = Path(run_dir) / "engines"
        self.host, self.startup_timeout, self.grace = host, startup_timeout, grace
        self.commands = dict(COMMANDS if commands is None else commands)
        self.env = dict(env or {})
        self.servers: dict[tuple[str, str], Running] = {}  # (kind, checkpoint key) -> server
        self.slots: dict[str, tuple[str, str]] = {}  # slot -> the key it uses

    def backend_spec(self, slot: str, kind: str, checkpoint: Checkpoint, *,
                     startup_timeout: float | None = None, **spec_options: Any) -> BackendSpec:
        """An ``openai`` spec for a server of ``checkpoint`` (started, or reused); see the module doc.

        ``spec_options`` go to the :class:`BackendSpec` (``concurrency``, ``timeout``, ``max_retries``).
        """
        key = (kind, checkpoint.key())
        previous = self.slots.get(slot)
        if key in self.servers and self.servers[key].server.running:
            self.slots[slot] = key
            self._release(previous)
            log.info("engine %s for %s: reusing %s", kind, slot, self.servers[key].server.url)
            return self.servers[key].spec
        self.slots.pop(slot, None)
        self._release(previous)
        self.servers.pop(key, None)  # one that died since: start afresh
        running = self._start(slot, kind, checkpoint, startup_timeout, spec_options)
        self.servers[key] = running
        self.slots[slot] = key
        return running.spec

    def _start(self, slot: str, kind: str, ck: Checkpoint, startup_timeout: float | None,
               spec_options: dict[str, Any]) -> Running:
        if kind not in self.commands:
            launch_command(kind, ck, self.host, 0)  # the unknown-kind error
        port = free_port(self.host)
        argv = self.commands[kind](ck, self.host, port)
        log_path = self.log_dir / f"{slot}-{kind}.log"
        missing = missing_paths(ck)
        if missing:
            raise start_error(kind, f"cannot start: {missing[0]} does not exist", argv, log_path,
                              "check the model and adapter paths (a training stage writes them)")
        server = ManagedServer(argv, engine=kind, name=slot, log_path=log_path, port=port, host=self.host,
                               startup_timeout=startup_timeout or self.startup_timeout, grace=self.grace,
                               env=self.env, install_hint=INSTALL_HINTS.get(kind))
        log.info("engine %s for %s: starting %s (log %s)", kind, slot, " ".join(argv), log_path)
        server.start()
        try:
            served = server.wait_ready()
        except BaseException:
            server.stop()
            raise
        model = request_model(kind, ck)
        if served and model not in served and kind in LISTS_REQUEST_MODEL:
            server.stop()
            raise start_error(kind, f"serves {served}, not {model!r}", argv, log_path,
                              "set served_name to what the server lists, or drop it")
        spec = BackendSpec(name=model, backend="openai", base_url=[server.base_url], **spec_options)
        log.info("engine %s for %s: ready at %s", kind, slot, server.base_url)
        return Running(kind, ck, server, spec)

    def _release(self, key: tuple[str, str] | None) -> None:
        """Stop the server of ``key`` when no slot uses it any more."""
        if key is None or key in self.slots.values() or key not in self.servers:
            return
        running = self.servers.pop(key)
        log.info("engine %s: stopping %s", running.kind, running.server.url)
        running.server.stop()

    def stop(self, slot: str) -> None:
        """Let go of ``slot``'s server (stopped unless another slot uses it)."""
        self._release(self.slots.pop(slot, None))

    def close(self) -> None:
        """Stop every server (each is tried even if another fails to stop)."""
        errors: list[BaseException] = []
        for running in list(self.servers.values()):
            try:
                running.server.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest first
                errors.append(exc)
        self.servers.clear()
        self.slots.clear()
        if errors:
            raise CaiError(f"could not stop every engine: {errors[0]}")

    def __enter__(self) -> EngineManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
