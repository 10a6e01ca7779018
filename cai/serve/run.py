"""Start the engines of a routing table, then the router in front of them, until SIGTERM/SIGINT.

Two ways to serve the layers (:func:`plan_engines`, pure):

* ``transformers`` (CPU): one ``transformers serve`` per layer, each preloading the layer's full model
  (a region given only as an adapter is merged onto the core model first: :mod:`cai.serve.merge`);
* ``vllm`` (GPUs): one ``vllm serve`` of the core model with every regional adapter
  (``--enable-lora --lora-modules eu=... us=...``); a request picks its adapter by model name. A
  region given only as a full model gets a vLLM of its own.

The engines run under :class:`~cai.engines.manager.EngineManager` (own process group, watchdog,
parent-death signal: none outlives ``cai serve``, even killed with SIGKILL). :func:`serve` runs the
router under uvicorn; SIGTERM or Ctrl-C stops accepting connections, lets the requests in flight
finish (up to ``grace`` seconds), then stops every engine.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.core.errors import CaiError
from cai.engines.commands import Checkpoint
from cai.serve.routing import Layer, RoutingTable

log = logging.getLogger(__name__)
KINDS = ("transformers", "vllm")


@dataclass(frozen=True)
class EnginePlan:
    """One engine to start: its manager slot (and log name), what it serves, and the model id each
    layer it serves is requested under."""

    slot: str
    checkpoint: Checkpoint
    models: dict[str, str] = field(default_factory=dict)


def plan_engines(table: RoutingTable, kind: str, *, dtype: str | None = None,
                 args: Mapping[str, Any] | None = None) -> list[EnginePlan]:
    """The engines that serve every layer of ``table`` (paths already resolved).

    >>> t = RoutingTable(layers={"core": Layer(model="/r/core"), "eu": Layer(adapter="/r/eu/adapter",
    ...                          model="/r/eu"), "us": Layer(adapter="/r/us/adapter")})
    >>> [(p.slot, p.checkpoint.model, p.checkpoint.adapters, p.models) for p in plan_engines(t, "vllm")]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('core', '/r/core', (('eu', '/r/eu/adapter'), ('us', '/r/us/adapter')),
      {'core': '/r/core', 'eu': 'eu', 'us': 'us'})]
    >>> [(p.slot, p.models) for p in plan_engines(t, "transformers")]  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: layer us: transformers serve loads no adapters, and the layer has no model
    (fix: merge it first (cai serve does: prepare_layers), or use --engine vllm)
    >>> t2 = t.model_copy(update={"layers": {**t.layers, "us": Layer(model="/m/us")}})
    >>> [(p.slot, p.checkpoint.model, p.models) for p in plan_engines(t2, "transformers")]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('core', '/r/core', {'core': '/r/core'}), ('eu', '/r/eu', {'eu': '/r/eu'}),
     ('us', '/m/us', {'us': '/m/us'})]
    """
    if kind not in KINDS:
        raise CaiError(f"--engine {kind}: not an engine cai serve runs",
                       hint=f"use one of: {', '.join(KINDS)}")
    args = dict(args) if args else None
    core = table.layers[table.core]
    if kind == "transformers":
        plans = []
        for name, layer in table.layers.items():
            if layer.model is None:
                raise CaiError(f"layer {name}: transformers serve loads no adapters, and the layer has no "
                               "model",
                               hint="merge it first (cai serve does: prepare_layers), or use --engine vllm")
            ck = Checkpoint(layer.model, dtype=dtype, args=args)
            plans.append(EnginePlan(name, ck, {name: layer.model}))
        return plans
    adapters = tuple((n, ly.adapter) for n, ly in table.layers.items() if n != table.core and ly.adapter)
    main = EnginePlan(table.core, Checkpoint(str(core.model), adapters=adapters, dtype=dtype, args=args),
                      {table.core: str(core.model), **{n: n for n, _ in adapters}})
    own = [EnginePlan(n, Checkpoint(str(ly.model), dtype=dtype, args=args), {n: str(ly.model)})
           for n, ly in table.layers.items() if n != table.core and not ly.adapter]
    return [main, *own]


def prepare_layers(table: RoutingTable, kind: str, work_dir: Path) -> RoutingTable:
    """For ``transformers``: every adapter-only layer merged onto the core model (in
    ``work_dir/merged/<layer>``, reused while the adapter is unchanged); otherwise ``table`` as is."""
    if kind != "transformers":
        return table
    from cai.serve.merge import merged_copy

    core = str(table.layers[table.core].model)
    layers = dict(table.layers)
    for name, layer in table.layers.items():
        if layer.model is None and layer.adapter is not None:
            out = merged_copy(core, layer.adapter, work_dir / "merged" / name)
            layers[name] = Layer(model=str(out.resolve()), adapter=layer.adapter)
    return table.model_copy(update={"layers": layers})


def describe(table: RoutingTable, plans: list[EnginePlan], kind: str) -> list[str]:
    """One line per engine and per rule (what ``cai serve --check`` prints).

    >>> t = RoutingTable(layers={"core": Layer(model="/r/core")})
    >>> print("\\n".join(describe(t, plan_engines(t, "transformers"), "transformers")))
    engine transformers [core]: /r/core -> core
    rule 1: header X-User-Region
    rule 2: metadata.region
    default: core; unknown regions: core
    """
    lines = []
    for plan in plans:
        ck = plan.checkpoint
        with_adapters = "".join(f" + {n}={p}" for n, p in ck.adapters)
        served = ", ".join(plan.models)
        lines.append(f"engine {kind} [{plan.slot}]: {ck.model}{with_adapters} -> {served}")
    for i, rule in enumerate(table.rules, 1):
        mapping = rule.locale if rule.locale is not None else rule.map
        shown = " " + ", ".join(f"{k}->{v}" for k, v in mapping.items()) if mapping else ""
        lines.append(f"rule {i}: {rule.source}{shown}")
    lines.append(f"default: {table.default_layer}; unknown regions: {table.core}")
    return lines


def start_engines(manager: Any, plans: list[EnginePlan], kind: str, startup_timeout: float) -> dict:
    """Start (through ``manager``) every planned engine; the :class:`~cai.serve.router.Upstream` of each
    layer."""
    from cai.serve.router import Upstream

    upstreams = {}
    for plan in plans:
        spec = manager.backend_spec(plan.slot, kind, plan.checkpoint, startup_timeout=startup_timeout)
        for layer, model in plan.models.items():
            upstreams[layer] = Upstream(layer, spec.base_url[0], model)
    return upstreams


def serve(table: RoutingTable, *, kind: str, host: str, port: int, log_dir: Path,
          startup_timeout: float = 600.0, dtype: str | None = None, args: Mapping[str, Any] | None = None,
          grace: float = 30.0, on_ready: Callable[[str], None] | None = None) -> str | None:
    """Engines, then the router on ``host:port`` until a signal; returns the signal's name (None if
    the router stopped by itself). Engines are stopped on every way out."""
    import uvicorn

    from cai.engines.manager import EngineManager
    from cai.engines.process import port_free
    from cai.serve.router import build_app

    if not port_free(host, port):
        raise CaiError(f"--port {port}: {host}:{port} is taken",
                       hint="stop what listens there, or pick another")
    table = prepare_layers(table, kind, log_dir)
    plans = plan_engines(table, kind, dtype=dtype, args=args)
    got: dict[str, Any] = {"signal": None, "serving": False}

    def on_signal(sig: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
        got["signal"] = signal.Signals(sig).name
        if not got["serving"]:  # still starting engines: stop now (the manager stops what started)
            raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    stops = (signal.SIGINT, signal.SIGTERM) if main_thread else ()
    previous = {s: signal.signal(s, on_signal) for s in stops}
    try:
        with EngineManager(log_dir, host="127.0.0.1", startup_timeout=startup_timeout) as manager:
            upstreams = start_engines(manager, plans, kind, startup_timeout)
            url = f"http://{host}:{port}/v1"

            def ready() -> None:
                log.info("cai serve: router at %s, layers %s (core %s)", url, ", ".join(table.layers),
                         table.core)
                if on_ready is not None:
                    on_ready(url)

            app = build_app(table, upstreams, on_startup=ready)
            config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                    timeout_graceful_shutdown=grace, lifespan="on")
            got["serving"] = True  # uvicorn takes SIGINT/SIGTERM from here: graceful stop, then ours again
            uvicorn.Server(config).run()
            log.info("cai serve: router stopped (%s); stopping the engines", got["signal"] or "exit")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return got["signal"]
