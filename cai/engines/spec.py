"""The ``engine:`` setting of a model role, and the backend spec a stage gets from it.

``engine: local`` (in-process ``hf``, the CPU default), ``engine: {server: URL}`` (a server the
user runs) or ``engine: {managed: vllm | sglang | llama-server | transformers, args: {...}}`` (cai
starts one through :class:`~cai.engines.manager.EngineManager`). :func:`stage_backend` turns it,
plus the checkpoint a stage needs, into the :class:`~cai.backends.spec.BackendSpec` the stage uses.

>>> parse_engine("local"), parse_engine({"managed": "vllm", "tensor_parallel_size": 2}).managed
('local', 'vllm')
>>> parse_engine({"managed": "tgi"}, "model.engine")  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
cai.core.errors.CaiError: model.engine: managed: Input should be 'vllm', 'sglang', 'llama-server' or
'transformers' (fix: write engine: local, engine: {server: URL} or engine: {managed: vllm, args: {...}})
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from cai.backends.spec import BackendSpec
from cai.core.errors import CaiError, pydantic_error_line
from cai.engines.commands import Checkpoint
from cai.engines.manager import EngineManager


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class ServerEngine(BaseModel):
    """A server the user runs: its base URL(s) and, optionally, the model name it serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    server: Annotated[list[str], BeforeValidator(_listify)]
    name: str | None = None
    concurrency: int = Field(8, ge=1)


class ManagedEngine(BaseModel):
    """A server cai starts for each checkpoint (see :mod:`cai.engines.commands` for each kind's flags).

    ``lora: true`` serves the base model plus the stage's ``adapter/`` folder without merging
    (vLLM, SGLang); otherwise the merged folder a training stage writes is served.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    managed: Literal["vllm", "sglang", "llama-server", "transformers"]
    args: dict[str, Any] | list[str] | None = None
    tensor_parallel_size: int | None = Field(None, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    served_name: str | None = None
    lora: bool = False
    startup_timeout: float = Field(600.0, gt=0)
    concurrency: int = Field(8, ge=1)


Engine = Literal["local"] | ServerEngine | ManagedEngine
_ENGINE = TypeAdapter(Engine)


def parse_engine(value: Any, where: str = "engine") -> Engine:
    """An ``engine:`` value checked; a bad one is one :class:`CaiError` line naming ``where``."""
    if value is None or value == "local":
        return "local"
    hint = "write engine: local, engine: {server: URL} or engine: {managed: vllm, args: {...}}"
    if not isinstance(value, dict):
        raise CaiError(f"{where}: {value!r} is not an engine", hint=hint)
    try:
        if isinstance(value, dict) and "managed" in value:
            return ManagedEngine.model_validate(value)
        if isinstance(value, dict) and "server" in value:
            return ServerEngine.model_validate(value)
        return _ENGINE.validate_python(value)
    except ValidationError as exc:
        raise CaiError(pydantic_error_line(exc, where), hint=hint) from None


def stage_backend(engine: Engine, *, role: str, model: str | Path, local: BackendSpec,
                  manager: EngineManager | None = None, base_model: str | None = None) -> BackendSpec:
    """The spec a stage samples ``model`` (a trained folder or hub id) with, under ``engine``.

    ``local`` is the role's own spec (its dtype, device, batch size); ``base_model`` is what a
    trained folder's ``adapter/`` was trained from (for ``lora: true``).

    >>> stage_backend("local", role="policy", model="runs/x/sft", local=BackendSpec(dtype="float32")).name
    'runs/x/sft'
    >>> s = stage_backend(ServerEngine(server="http://127.0.0.1:8000/v1"), role="policy", model="runs/x/sft",
    ...                   local=BackendSpec())
    >>> s.backend, s.name, s.base_url
    ('openai', 'runs/x/sft', ['http://127.0.0.1:8000/v1'])
    """
    if engine == "local":
        return local.for_model(str(model))
    if isinstance(engine, ServerEngine):
        return BackendSpec(backend="openai", name=engine.name or str(model), base_url=list(engine.server),
                           concurrency=engine.concurrency, timeout=local.timeout,
                           max_retries=local.max_retries)
    if manager is None:
        raise CaiError(f"{role}: engine managed {engine.managed} needs a run to manage it",
                       hint="use it from cai run, or give engine: {server: URL}")
    adapter = Path(model) / "adapter"
    adapters: tuple[tuple[str, str], ...] = ()
    served = str(Path(model).resolve()) if Path(model).exists() else str(model)
    if engine.lora and adapter.is_dir():
        if not base_model:
            raise CaiError(f"{role}: lora: true needs the base model the adapter was trained from")
        served, adapters = base_model, ((role, str(adapter.resolve())),)
    ck = Checkpoint(served, adapters=adapters, served_name=engine.served_name,
                    tensor_parallel_size=engine.tensor_parallel_size,
                    gpu_memory_utilization=engine.gpu_memory_utilization, dtype=local.dtype,
                    trust_remote_code=local.trust_remote_code, args=engine.args)
    return manager.backend_spec(role, engine.managed, ck, startup_timeout=engine.startup_timeout,
                                concurrency=engine.concurrency, timeout=local.timeout,
                                max_retries=local.max_retries)
