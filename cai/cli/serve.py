"""`cai serve`: the regional layers behind one OpenAI-compatible router (see :mod:`cai.serve`)."""

from __future__ import annotations

from pathlib import Path

import typer


def _engine_args(items: list[str] | None) -> dict | None:
    """``--engine-arg KEY=VALUE`` (repeatable) as the engine's extra flags; values read as YAML scalars.

    >>> _engine_args(["max_loras=4", "enforce_eager=true"])
    {'max_loras': 4, 'enforce_eager': True}
    """
    import yaml

    from cai.core.errors import CaiError

    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise CaiError(f"--engine-arg {item!r}: expected KEY=VALUE", hint="e.g. --engine-arg max_loras=4")
        try:
            out[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out or None


def serve(
    routes: Path | None = typer.Option(None, "--routes", help="Routing table YAML (layers, rules, default)."),
    run: Path | None = typer.Option(None, "--run", help="A core + regions run folder: its core/model and "
                                    "regions/<name>/ are the layers; relative paths in --routes start here."),
    engine: str = typer.Option("transformers", "--engine", help="transformers (CPU: one transformers serve "
                               "per layer) or vllm (GPU: one vLLM with every regional adapter)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address the router listens on."),
    port: int = typer.Option(8000, "--port", help="Port the router listens on."),
    device: str | None = typer.Option(None, "--device", help="transformers serve --device (default: cpu)."),
    dtype: str | None = typer.Option(None, "--dtype", help="Engine dtype (transformers default: float32)."),
    engine_arg: list[str] | None = typer.Option(None, "--engine-arg", help="Extra engine flag KEY=VALUE "
                                                "(repeatable), e.g. max_loras=4."),
    startup_timeout: float = typer.Option(600.0, "--startup-timeout", help="Seconds each engine may take."),
    grace: float = typer.Option(30.0, "--grace", help="Seconds in-flight requests get at shutdown."),
    log_dir: Path | None = typer.Option(None, "--log-dir", help="Engine logs and merged copies (default: "
                                        "RUN/serve, else runs/serve)."),
    check: bool = typer.Option(False, "--check", help="Validate the table, print the engines and rules, "
                               "start nothing."),
) -> None:
    """Serve the core and regional layers behind one OpenAI-compatible router that picks the layer
    from each request's user context (X-User-Region, metadata.region, locale)."""
    from cai.cli.logs import setup_logging
    from cai.core.errors import CaiError
    from cai.serve.routing import load_routes
    from cai.serve.run import KINDS, describe, plan_engines
    from cai.serve.run import serve as run_serve

    if engine not in KINDS:
        raise CaiError(f"--engine {engine}: not an engine cai serve runs",
                       hint=f"use one of: {', '.join(KINDS)}")
    table = load_routes(routes, run)
    args = _engine_args(engine_arg) or {}
    if engine == "transformers":
        args = {"device": device or "cpu", **args}
        dtype = dtype or "float32"
    elif device:
        args = {"device": device, **args}
    folder = log_dir or (run / "serve" if run else Path("runs") / "serve")
    if check:
        shown = table if engine != "transformers" else table.model_copy(update={"layers": {
            n: (ly if ly.model else ly.model_copy(update={"model": str(folder / "merged" / n)}))
            for n, ly in table.layers.items()}})
        for line in describe(shown, plan_engines(shown, engine, dtype=dtype, args=args), engine):
            typer.echo(line)
        return
    setup_logging(folder)
    stopped = run_serve(table, kind=engine, host=host, port=port, log_dir=folder,
                        startup_timeout=startup_timeout, dtype=dtype, args=args, grace=grace)
    typer.echo(f"cai serve: stopped ({stopped or 'exit'}); every engine stopped")
