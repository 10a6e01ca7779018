"""Which backend each model role of a run samples with: in process, a server the user runs, or a managed
engine (:mod:`cai.engines`) that the run starts for the checkpoint a stage needs.

A recipe's model sections carry ``engine:`` (``local``, ``{server: URL}`` or ``{managed: vllm | sglang |
llama-server | transformers, args: {...}}``). :func:`sampling_spec` is the one place stages turn a model
section plus a checkpoint (the base model, or a folder this run trained) into the spec they sample with;
the run's :class:`~cai.engines.manager.EngineManager` is made on first use and closed by
:func:`cai.run.engine.run_pipeline` when the run ends, however it ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cai.backends.spec import BackendSpec
from cai.run.engine import RunContext

if TYPE_CHECKING:
    from cai.engines.manager import EngineManager
    from cai.run.recipe import ModelSpec

ENGINES_KEY = "engines"  # ctx.extra key of the run's EngineManager


def run_engines(ctx: RunContext) -> EngineManager:
    """The run's engine manager (made now if this is the first managed engine of the run)."""
    from cai.engines.manager import EngineManager

    if ENGINES_KEY not in ctx.extra:
        ctx.extra[ENGINES_KEY] = EngineManager(ctx.run_dir)
    return ctx.extra[ENGINES_KEY]


def served_model(model: ModelSpec, checkpoint: str | Path | None) -> str:
    """What a server loads: the checkpoint, else the model's weights (the embedded ``default`` resolved to
    its converted folder, which a server can load).

    >>> from cai.run.recipe import ModelSpec
    >>> served_model(ModelSpec(name="org/m"), None), served_model(ModelSpec(name="org/m"), "runs/x/sft")
    ('org/m', 'runs/x/sft')
    """
    if checkpoint is not None:
        return str(checkpoint)
    from cai.backends.hf.loading import is_default, resolve_model

    weights = model.train_weights()
    return resolve_model(weights) if is_default(weights) else weights


def sampling_spec(ctx: RunContext, model: ModelSpec, role: str, checkpoint: str | Path | None = None,
                  dtype: str | None = None) -> BackendSpec:
    """The spec a stage samples ``checkpoint`` (default: the model itself) with, under ``model.engine``.

    ``role`` names the engine slot (``policy``, ``feedback``, ``eval-sft``...): a server is reused by any
    role while its checkpoint stays the same. ``dtype`` (a stage's own, e.g. int8) applies in process only.

    >>> from cai.run.recipe import ModelSpec
    >>> ctx = RunContext(Path("runs/x"))
    >>> sampling_spec(ctx, ModelSpec(name="org/m"), "policy", "runs/x/sft").name
    'runs/x/sft'
    >>> s = sampling_spec(ctx, ModelSpec(name="org/m", engine={"server": "http://127.0.0.1:9/v1"}), "policy")
    >>> s.backend, s.base_url, ENGINES_KEY in ctx.extra
    ('openai', ['http://127.0.0.1:9/v1'], False)
    """
    if model.engine == "local":
        local = model.for_model(str(checkpoint)) if checkpoint is not None else model
        return local.with_dtype(dtype)
    from cai.engines.spec import ManagedEngine, stage_backend

    manager = run_engines(ctx) if isinstance(model.engine, ManagedEngine) else None
    served = served_model(model, checkpoint) if manager is not None else str(checkpoint or model.name)
    return stage_backend(model.engine, role=role, model=served, local=model, manager=manager,
                         base_model=model.train_weights())


def close_engines(ctx: RunContext) -> None:
    """Stop every server the run started (a no-op when none was)."""
    manager = ctx.extra.pop(ENGINES_KEY, None)
    if manager is not None:
        manager.close()
