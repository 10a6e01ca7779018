"""One description of a model backend, and the one place that builds it.

:class:`BackendSpec` says which backend serves a model and how: ``hf`` (local
transformers; ``batch_size``, ``device``, ``dtype`` (``int8``: int8 weights and
activations on CPU, :mod:`cai.backends.hf.quantize`), ``trust_remote_code``,
``chat_template``) or ``openai`` (any OpenAI-compatible server; ``base_url``,
``api_key_env``, ``concurrency``, ``timeout``, ``max_retries``). The command-line
options and the recipe's model sections both produce one, and
:meth:`BackendSpec.build` is the only backend factory: it imports the
implementation only then, so holding a spec costs nothing.

>>> s = BackendSpec(name="default")
>>> s.backend, s.batch_size, s.for_model("runs/x/sft").name
('hf', 16, 'runs/x/sft')
>>> BackendSpec(backend="openai", name="m", base_url="http://127.0.0.1:8000/v1").base_url
['http://127.0.0.1:8000/v1']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from cai.backends.protocol import Backend, Chat, Generation
from cai.core.errors import CaiError
from cai.core.records import SamplingParams

BACKENDS = ("hf", "openai")


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class BackendSpec(BaseModel):
    """A model and how to reach it (see the module doc). Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "default"
    backend: Literal["hf", "openai"] = "hf"
    base_url: Annotated[list[str], BeforeValidator(_listify)] = Field(default_factory=list)
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(8, ge=1)
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0)
    batch_size: int = Field(16, ge=1)
    device: str | None = None
    dtype: str | None = None
    trust_remote_code: bool = False
    chat_template: str | None = None

    @model_validator(mode="after")
    def _urls(self) -> BackendSpec:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend openai needs base_url, e.g. base_url: [http://127.0.0.1:8000/v1]")
        if self.backend == "hf" and self.base_url:
            raise ValueError("base_url is only for backend: openai")
        if (self.dtype or "").lower() == "int8" and self.device and self.device not in ("cpu", "auto"):
            raise ValueError(f"dtype int8 runs on the CPU only, not on device {self.device}: use bfloat16 on "
                             "a GPU (the default there)")
        return self

    def build(self) -> Backend:
        """The backend this spec describes (the model is loaded, or the server's client made, now)."""
        if self.backend == "openai":
            from cai.backends.openai.backend import OpenAIBackend

            return OpenAIBackend(self.name, base_urls=list(self.base_url), api_key_env=self.api_key_env,
                                 concurrency=self.concurrency, timeout=self.timeout,
                                 max_retries=self.max_retries)
        from cai.backends.hf.backend import HFBackend

        return HFBackend(self.name, batch_size=self.batch_size, device=self.device, dtype=self.dtype,
                         trust_remote_code=self.trust_remote_code, chat_template=self.chat_template)

    def identity(self) -> dict[str, Any]:
        """What determines this model's outputs (not how many requests fly at once).

        >>> BackendSpec(batch_size=4).identity() == BackendSpec(batch_size=64).identity()
        True
        """
        return {"name": self.name, "backend": self.backend, "dtype": self.dtype,
                "trust_remote_code": self.trust_remote_code, "chat_template": self.chat_template}

    def key(self) -> tuple[str, str, tuple[str, ...], str | None]:
        """Which model this is: two specs with one key are one loaded model (``(backend, name, urls,
        dtype)``: an int8 copy is another model than the fp32 one).

        >>> BackendSpec(dtype="int8").key() == BackendSpec().key()
        False
        """
        return (self.backend, self.name, tuple(self.base_url), self.dtype)

    def for_model(self, path: str, batch_size: int | None = None) -> BackendSpec:
        """A local ``hf`` spec for a checkpoint this run trained, with this spec's local settings.

        >>> BackendSpec(backend="openai", name="m", base_url=["http://h/v1"],
        ...             dtype="bfloat16").for_model("sft").dtype
        'bfloat16'
        """
        return BackendSpec(name=str(path), batch_size=batch_size or self.batch_size, device=self.device,
                           dtype=self.dtype, trust_remote_code=self.trust_remote_code,
                           chat_template=self.chat_template)

    def with_dtype(self, dtype: str | None) -> BackendSpec:
        """The same model in ``dtype`` (a stage's own ``dtype``, e.g. int8 for sampling); None keeps it.

        >>> BackendSpec().with_dtype("int8").dtype, BackendSpec(dtype="float32").with_dtype(None).dtype
        ('int8', 'float32')
        """
        return self if dtype is None else self.model_copy(update={"dtype": dtype})

    def with_batch_size(self, batch_size: int) -> BackendSpec:
        """The same model, another batch size (``hf``: sequences per forward pass)."""
        return self.model_copy(update={"batch_size": batch_size})


# Which command-line option sets each field, for one-line errors that name the option.
OPTION_NAMES = {"name": "--model", "backend": "--backend", "base_url": "--base-url"}


def spec_from_options(backend: str = "hf", model: str = "default", *, prefix: str = "",
                      **options: Any) -> BackendSpec:
    """A spec from command-line values; a bad one is a :class:`CaiError` naming the option.

    ``prefix`` (e.g. ``"feedback-"``) is how the command spells the model's own options.

    >>> spec_from_options("openai", "m", base_url=["http://127.0.0.1:1/v1"]).backend
    'openai'
    >>> spec_from_options("openai", "m")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: --backend openai needs --base-url (fix: e.g. --base-url
    http://127.0.0.1:8000/v1)
    >>> spec_from_options("hf", "m", base_url=["http://h/v1"])  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: --base-url is only for --backend openai (fix: add --backend openai, or drop
    --base-url)
    """
    from cai.core.errors import pydantic_error

    urls = list(options.pop("base_url", None) or [])
    p = f"--{prefix}"
    if backend == "openai" and not urls:
        raise CaiError(f"{p}backend openai needs {p}base-url",
                       hint=f"e.g. {p}base-url http://127.0.0.1:8000/v1")
    if backend != "openai" and urls:
        raise CaiError(f"{p}base-url is only for {p}backend openai",
                       hint=f"add {p}backend openai, or drop {p}base-url")
    if backend not in BACKENDS:
        raise CaiError(f"{p}backend {backend!r}: unknown backend", hint=f"use one of: {', '.join(BACKENDS)}")
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return BackendSpec(name=model, backend=backend, base_url=urls, **given)
    except ValidationError as exc:
        raise pydantic_error(exc, "options", options=True) from None


class LazyBackend:
    """A :class:`~cai.backends.protocol.Backend` for a spec that builds the real one on first use.

    ``model`` and ``kind`` are known at once (ids and provenance need them), the model
    is loaded only when something is generated or scored: a stage that finds all its
    records already written never loads it.

    >>> lazy = LazyBackend(BackendSpec(name="default"))
    >>> lazy.model, lazy.kind, lazy.built
    ('default', 'hf', False)
    """

    def __init__(self, spec: BackendSpec):
        self.spec = spec
        self.model, self.kind = spec.name, spec.backend
        self._backend: Backend | None = None

    @property
    def built(self) -> bool:
        return self._backend is not None

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self.spec.build()
        return self._backend

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Generation]:
        return self.backend().generate(chats, params)

    def score(self, chats: Sequence[Chat], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        return self.backend().score(chats, continuations)
