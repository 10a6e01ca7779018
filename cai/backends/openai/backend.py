"""A backend for any OpenAI-compatible chat-completions server.

:class:`OpenAIBackend` talks to vLLM, SGLang, TGI, Ollama, the llama.cpp server,
``transformers serve`` or a hosted API through the ``openai`` SDK
(``AsyncOpenAI``). It satisfies :class:`cai.backends.protocol.Backend`
structurally.

Requests
    ``generate`` sends one chat-completions request per (chat, sample) with its
    own seed (:func:`cai.backends.protocol.request_seed`); it never uses the
    server's ``n``. Requests run concurrently under one
    ``asyncio.Semaphore(concurrency)``; with several base URLs, request ``k``
    (chat-major, ``k = i * n + sample``) goes to ``base_urls[k % len(base_urls)]``
    (data-parallel generation over several servers; URL checks and the round
    robin live in :mod:`cai.backends.openai.urls`). The SDK's ``max_retries``
    is the only retry layer (besides the one TGI retry below), ``timeout`` its
    per-request timeout.

Continuing an assistant turn
    A chat that ends with an assistant message is sent as is, plus
    ``continue_final_message=True, add_generation_prompt=False`` in the request
    body (the SDK's ``extra_body``): vLLM and SGLang then continue that message
    instead of opening a new turn. Servers that do not know these fields either
    reject the request (``transformers serve``, OpenAI: an HTTP 4xx, reported as
    a :class:`~cai.core.errors.CaiError`, or as :class:`ScoringUnsupported` from
    ``score``) or ignore them.

Scoring
    ``score`` asks for ``logprobs=True, top_logprobs=20, max_tokens=1,
    temperature=1.0`` (the plain softmax: some servers return degenerate
    log-probs at temperature 0) and reads each continuation's log-probability
    from the ``top_logprobs`` of the first generated position with
    :func:`~cai.backends.openai.logprobs.option_logprobs` (the matching rule,
    and ``-inf`` for options of which none is listed, are documented there).
    Only the first token position is visible, so options should differ early:
    ``A``/``B`` or ``(A)``/``(B)`` work, long options that share a first word do
    not, and a continuation that is not a short option (at most 8 characters,
    no inner whitespace: :func:`~cai.backends.openai.logprobs.is_short_option`)
    is refused with :class:`ScoringUnsupported` before any request, since only
    its first token would be scored (the eval's KL probe scores whole answers).
    Which servers return logprobs on chat completions:

    * vLLM, SGLang, the llama.cpp server, OpenAI: yes;
    * TGI: yes, through its OpenAI-compatible ``/v1/chat/completions`` route.
      It caps ``top_logprobs`` at ``--max-top-n-tokens`` (default 5) and
      rejects more with an HTTP 422 naming the cap; ``score`` then retries once
      at that cap and keeps it (``top_logprobs``) for the backend's life;
    * Ollama: recent versions (logprobs arrived in 0.12.11; older ones drop the
      fields silently, which ``score`` reports as unsupported);
    * ``transformers serve``: no (it ignores ``logprobs``/``top_logprobs``).

    When a server returns no logprobs, or rejects the scoring request over one
    of the fields above, ``score`` raises :class:`ScoringUnsupported`; callers
    then fall back to generating an answer and parsing it.

Secrets
    The API key is read from the environment variable named by ``api_key_env``
    at each call and kept in no attribute; it is scrubbed from every error
    message. When the variable is unset and every base URL is on loopback, the
    placeholder key ``EMPTY`` is used (local servers need none).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import socket
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, TypeVar

import openai

from cai.backends.openai.logprobs import check_short_options, first_top_logprobs, option_logprobs
from cai.backends.openai.urls import base_url_for, is_loopback_url, normalize_base_url, redact_url
from cai.backends.protocol import Chat, Generation, ScoringUnsupported, cut_at_stop, request_seed
from cai.core.errors import CaiError
from cai.core.records import SamplingParams

T = TypeVar("T")
log = logging.getLogger(__name__)

TOP_LOGPROBS = 20
SCORE_TEMPERATURE = 1.0  # the plain softmax: some servers return degenerate log-probs at temperature 0
PLACEHOLDER_KEY = "EMPTY"
CONTINUE_FINAL_MESSAGE = {"continue_final_message": True, "add_generation_prompt": False}
# Request fields that only scoring (or continuing a turn) sends; a 4xx naming one means "unsupported".
_SCORING_FIELDS = ("logprobs", "top_logprobs", "top_n_tokens", "continue_final_message",
                   "add_generation_prompt")
_TOP_N_CAP = re.compile(r"top_n_tokens`?\s+must be >= ?0 and <= ?(\d+)")

RequestHook = Callable[[int, str], AbstractAsyncContextManager[Any]]


# ----- request plumbing helpers ---------------------------------------------------------------------


def continuation_body(chat: Chat) -> dict[str, Any] | None:
    """The extra request fields for a chat: continue a final assistant message, else none.

    >>> continuation_body([{"role": "user", "content": "q"}]) is None
    True
    >>> continuation_body([{"role": "user", "content": "q"}, {"role": "assistant", "content": "Step 1"}])
    {'continue_final_message': True, 'add_generation_prompt': False}
    """
    if chat and chat[-1].get("role") == "assistant":
        return dict(CONTINUE_FINAL_MESSAGE)
    return None


def top_logprobs_cap(message: str) -> int | None:
    """The ``top_logprobs`` limit a server's rejection names, or None.

    TGI caps ``top_logprobs`` (its ``top_n_tokens``) at ``--max-top-n-tokens``
    (default 5) and answers HTTP 422 naming the limit.

    >>> top_logprobs_cap("Input validation error: `top_n_tokens` must be >= 0 and <= 5. Given: 20")
    5
    >>> top_logprobs_cap("model not found") is None
    True
    """
    found = _TOP_N_CAP.search(message)
    return int(found.group(1)) if found else None


def server_message(body: object, fallback: str) -> str:
    """The server's error text from an error body, on one line.

    Knows OpenAI's ``{"error": {"message"}}``, FastAPI's ``{"detail"}`` and a plain
    ``{"message"}`` or ``{"error": "..."}``.

    >>> server_message({"error": {"message": "model  not\\nfound", "type": "x"}}, "?")
    'model not found'
    >>> server_message({"detail": "Unexpected fields in the request: {'logprobs'}"}, "?")
    "Unexpected fields in the request: {'logprobs'}"
    >>> server_message(None, "Error code: 500")
    'Error code: 500'
    """
    text: object = None
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            text = err.get("message")
        elif err:
            text = err
        text = text or body.get("detail") or body.get("message")
    elif isinstance(body, str) and body.strip():
        text = body
    return " ".join(str(text or fallback).split())


def scrub(text: str, secret: str | None) -> str:
    """Replace a secret in a message.

    >>> scrub("bad key sk-123", "sk-123")
    'bad key ***'
    >>> scrub("fine", None)
    'fine'
    """
    if secret and secret != PLACEHOLDER_KEY:
        return text.replace(secret, "***")
    return text


def _connection_reason(exc: BaseException, timeout: float) -> str:
    """Why a connection failed, from the exception and its causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    last = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (openai.APITimeoutError, TimeoutError)):
            return f"timed out after {timeout:g}s"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "host not found"
        last = str(current) or last
        current = current.__cause__ or current.__context__
    text = " ".join(last.split()).lower()
    if "refused" in text or "all connection attempts failed" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "host not found"
    return " ".join(last.split()) or "connection error"


def _mentions_scoring_field(message: str) -> bool:
    """Whether a rejection is about a field only scoring or continuing sends.

    >>> _mentions_scoring_field("Unexpected fields in the request: {'continue_final_message'}")
    True
    >>> _mentions_scoring_field("model not found")
    False
    """
    lower = message.lower()
    return any(field in lower for field in _SCORING_FIELDS)


def _run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code.

    Uses ``asyncio.run``; when the caller already runs an event loop (a notebook,
    an async app), the coroutine runs on a fresh loop in a helper thread.

    >>> async def two():
    ...     return 2
    >>> _run_sync(two)
    2
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def _gather_or_cancel(coros: Sequence[Awaitable[T]]) -> list[T]:
    """``gather`` that cancels the other requests as soon as one fails."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# ----- the backend --------------------------------------------------------------------------------


class OpenAIBackend:
    """A :class:`~cai.backends.protocol.Backend` over OpenAI-compatible servers.

    ``base_urls`` include the API prefix (``http://127.0.0.1:8000/v1``).
    ``request_hook``, if given, is called as ``request_hook(k, base_url)`` for
    each request ``k`` and entered as an async context manager around it,
    inside the concurrency cap (for instrumentation and tests).

    >>> b = OpenAIBackend("m", ["http://127.0.0.1:8000/v1", "http://localhost:8001/v1/"])
    >>> b.kind, b.base_urls
    ('openai', ('http://127.0.0.1:8000/v1', 'http://localhost:8001/v1'))
    """

    kind = "openai"

    def __init__(
        self,
        model: str,
        base_urls: str | Sequence[str],
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 2,
        request_hook: RequestHook | None = None,
    ):
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise CaiError("no base URL given for the OpenAI-compatible backend", hint="pass --base-url URL")
        if not model or not str(model).strip():
            raise CaiError("no model name given for the OpenAI-compatible backend", hint="pass --model NAME")
        if concurrency < 1:
            raise CaiError(f"concurrency must be at least 1, got {concurrency}", hint="pass --concurrency 8")
        if timeout <= 0:
            raise CaiError(f"timeout must be positive, got {timeout}", hint="pass --timeout 60")
        if max_retries < 0:
            raise CaiError(f"max_retries must be 0 or more, got {max_retries}", hint="pass --max-retries 2")
        self.model = str(model)
        self.base_urls: tuple[str, ...] = tuple(normalize_base_url(u) for u in urls)
        self.api_key_env = api_key_env
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.request_hook = request_hook
        self.top_logprobs = TOP_LOGPROBS  # lowered for good when a server names a smaller cap (TGI)
        self._api_key()  # fail now, not at the first request, when the key is missing

    def __repr__(self) -> str:
        urls = [redact_url(u) for u in self.base_urls]
        return (
            f"OpenAIBackend(model={self.model!r}, base_urls={urls!r}, api_key_env={self.api_key_env!r}, "
            f"concurrency={self.concurrency})"
        )

    # ----- public API -----

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Generation]:
        """One chat-completions request per (chat, sample), results chat-major."""
        if not chats:
            return []
        jobs = [(i, s) for i in range(len(chats)) for s in range(params.n)]

        async def run(
            clients: list[openai.AsyncOpenAI], limit: asyncio.Semaphore, key: str
        ) -> list[Generation]:
            return await _gather_or_cancel(
                [
                    self._generate_one(clients, limit, key, k, chats[i], i, s, params)
                    for k, (i, s) in enumerate(jobs)
                ]
            )

        return _run_sync(lambda: self._with_clients(run))

    def score(self, chats: Sequence[Chat], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        """Log-probabilities of each chat's continuations, from the first position's top logprobs.

        Raises :class:`ScoringUnsupported` when the server returns no logprobs, and
        before any request when a continuation is not a short option
        (:func:`is_short_option`): whole answers cannot be scored here.
        """
        if len(chats) != len(continuations):
            raise ValueError(f"{len(chats)} chats but {len(continuations)} continuation lists")
        if not chats:
            return []
        check_short_options(continuations)

        async def run(
            clients: list[openai.AsyncOpenAI], limit: asyncio.Semaphore, key: str
        ) -> list[list[float]]:
            return await _gather_or_cancel(
                [
                    self._score_one(clients, limit, key, k, chats[k], continuations[k])
                    for k in range(len(chats))
                ]
            )

        return _run_sync(lambda: self._with_clients(run))

    # ----- internals -----

    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env, "")
        if key:
            return key
        if all(is_loopback_url(u) for u in self.base_urls):
            return PLACEHOLDER_KEY
        raise CaiError(
            f"missing API key: environment variable {self.api_key_env} is not set",
            hint=f"export {self.api_key_env}=... or pass --api-key-env NAME",
        )

    async def _with_clients(self, run: Callable[..., Coroutine[Any, Any, T]]) -> T:
        key = self._api_key()
        clients = [
            openai.AsyncOpenAI(base_url=u, api_key=key, timeout=self.timeout, max_retries=self.max_retries)
            for u in self.base_urls
        ]
        try:
            return await run(clients, asyncio.Semaphore(self.concurrency), key)
        finally:
            for client in clients:
                await client.close()

    async def _call(
        self,
        clients: list[openai.AsyncOpenAI],
        limit: asyncio.Semaphore,
        key: str,
        k: int,
        request: dict[str, Any],
        scoring: bool = False,
        learn_cap: bool = False,
    ) -> Any:
        """Send request ``k`` to its server under the concurrency cap; SDK errors become CaiError.

        With ``learn_cap``, a rejection that names a ``top_logprobs`` limit raises :class:`_TopLogprobsCap`.
        """
        url = base_url_for(k, self.base_urls)
        client = clients[k % len(clients)]
        async with limit:
            hook = self.request_hook(k, url) if self.request_hook else nullcontext()
            async with hook:
                try:
                    return await client.chat.completions.create(**request)
                except openai.APIError as exc:
                    raise self._error(exc, url, key, scoring, learn_cap) from None

    def _error(self, exc: openai.APIError, url: str, key: str, scoring: bool,
               learn_cap: bool = False) -> Exception:
        """Turn an SDK error into one user-facing line (never with the key in it)."""
        shown = redact_url(url)
        if isinstance(exc, openai.APIConnectionError):
            reason = scrub(_connection_reason(exc, self.timeout), key)
            return CaiError(
                f"cannot reach OpenAI-compatible server at {shown}: {reason}",
                hint="is the server running? check --base-url",
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message = scrub(server_message(exc.body, exc.message), key)
            if status in (401, 403):
                return CaiError(
                    f"authentication failed at {shown} (HTTP {status}) with the key from "
                    f"environment variable {self.api_key_env}",
                    hint=f"export {self.api_key_env}=<a valid key> or pass --api-key-env NAME",
                )
            cap = top_logprobs_cap(message) if scoring and learn_cap and status in (400, 422) else None
            if cap:  # a cap of 0 (logprobs off) falls through: unsupported
                return _TopLogprobsCap(cap)
            if scoring and status in (400, 404, 422, 501) and _mentions_scoring_field(message):
                return ScoringUnsupported(
                    f"OpenAI-compatible server at {shown} rejected a scoring request (logprobs or continuing "
                    f"an assistant turn): HTTP {status}: {message}; the caller will fall back to "
                    f"generated answers"
                )
            if status == 404:
                return CaiError(
                    f"model {self.model!r} not found at {shown} (HTTP 404): {message}",
                    hint=f"check --model against {shown}/models, and that --base-url ends with the API "
                         f"prefix (/v1)",
                )
            hint = None
            if status in (400, 422) and _mentions_scoring_field(message):
                hint = "this server cannot continue a final assistant message: end the chat with a user turn"
            return CaiError(
                f"OpenAI-compatible server at {shown} returned HTTP {status}: {message}", hint=hint
            )
        return CaiError(f"OpenAI-compatible server at {shown}: {scrub(' '.join(str(exc).split()), key)}")

    async def _generate_one(
        self,
        clients: list[openai.AsyncOpenAI],
        limit: asyncio.Semaphore,
        key: str,
        k: int,
        chat: Chat,
        index: int,
        sample: int,
        params: SamplingParams,
    ) -> Generation:
        seed = request_seed(params.seed, chat, sample)
        request: dict[str, Any] = {
            "model": self.model,
            "messages": _messages(chat),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "seed": seed,
        }
        if params.stop:
            request["stop"] = list(params.stop)
        extra = continuation_body(chat)
        if extra:
            request["extra_body"] = extra
        response = await self._call(clients, limit, key, k, request)
        if not getattr(response, "choices", None):
            shown = redact_url(base_url_for(k, self.base_urls))
            raise CaiError(f"OpenAI-compatible server at {shown} returned a completion without choices")
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        # Some servers (transformers serve) keep the stop string in the text: drop it, as OpenAI does.
        text, cut = cut_at_stop(choice.message.content or "", params.stop)
        return Generation(
            text=text,
            finish_reason="stop" if cut else (choice.finish_reason or "stop"),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            index=index,
            sample=sample,
            seed=seed,
        )

    async def _score_one(
        self,
        clients: list[openai.AsyncOpenAI],
        limit: asyncio.Semaphore,
        key: str,
        k: int,
        chat: Chat,
        options: Sequence[str],
    ) -> list[float]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": _messages(chat),
            "max_tokens": 1,
            "temperature": SCORE_TEMPERATURE,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }
        extra = continuation_body(chat)
        if extra:
            request["extra_body"] = extra
        try:
            response = await self._call(clients, limit, key, k, request, scoring=True, learn_cap=True)
        except _TopLogprobsCap as cap:  # retry once at the server's cap, and keep it for later requests
            if cap.limit < self.top_logprobs:
                log.warning("OpenAI-compatible server at %s caps top_logprobs at %d (TGI: "
                            "--max-top-n-tokens); scoring with the top %d from now on (an option outside "
                            "them counts as not listed)",
                            redact_url(base_url_for(k, self.base_urls)), cap.limit, cap.limit)
            self.top_logprobs = min(self.top_logprobs, cap.limit)
            request["top_logprobs"] = self.top_logprobs
            response = await self._call(clients, limit, key, k, request, scoring=True)
        top = first_top_logprobs(response)
        if not top:
            raise ScoringUnsupported(
                f"OpenAI-compatible server at {redact_url(base_url_for(k, self.base_urls))} returned no "
                f"logprobs for chat completions; the caller will fall back to generated answers"
            )
        return option_logprobs(top, list(options))


class _TopLogprobsCap(Exception):
    """A server rejected ``top_logprobs`` above ``limit`` (internal: the scoring request is retried)."""

    def __init__(self, limit: int):
        super().__init__(f"top_logprobs is capped at {limit}")
        self.limit = limit


def _messages(chat: Chat) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in chat]
