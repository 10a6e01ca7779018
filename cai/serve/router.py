"""The OpenAI-compatible router: picks a layer per request and forwards it to that layer's engine.

Endpoints (a starlette app; :func:`build_app`):

* ``POST /v1/chat/completions``, ``POST /v1/completions``: the layer comes from
  :func:`cai.serve.routing.pick_layer`; the body goes to the layer's engine with ``model`` rewritten
  to the id that engine serves the layer under (routing-only fields such as ``locale`` dropped);
  the answer comes back as the engine sent it, a stream (``"stream": true``) chunk by chunk as
  server-sent events arrive;
* ``GET /v1/models``: the layers; ``GET /health``: the router and every engine (503 when one is down).

Every answer carries ``X-Cai-Layer`` (the layer that answered) and ``X-Cai-Route-Reason`` (why), and
every request makes one log line (``cai.serve.router``): method, path, layer, reason, status, time;
a fallback to the core layer for an unknown region is a WARNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from cai.serve.routing import ROUTING_FIELDS, RequestContext, RoutingTable, pick_layer

log = logging.getLogger(__name__)

LAYER_HEADER, REASON_HEADER = "X-Cai-Layer", "X-Cai-Route-Reason"
# Request headers the engine gets (the rest, Host and Content-Length included, httpx2 sets itself).
FORWARDED = ("authorization", "accept", "x-request-id", "openai-organization", "openai-project")


@dataclass(frozen=True)
class Upstream:
    """Where one layer is served: the engine's API root (``http://h:p/v1``) and the model id to request."""

    layer: str
    base_url: str
    model: str


def marks(layer: str, reason: str) -> dict[str, str]:
    """The response headers that say which layer answered and why.

    >>> marks("eu", "header X-User-Region=eu")
    {'X-Cai-Layer': 'eu', 'X-Cai-Route-Reason': 'header X-User-Region=eu'}
    """
    return {LAYER_HEADER: layer, REASON_HEADER: reason}


def engine_body(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The body an engine gets: ``model`` rewritten, routing-only fields dropped.

    >>> engine_body({"model": "cai", "locale": "de-DE", "messages": []}, "/runs/x/regions/eu/model")
    {'model': '/runs/x/regions/eu/model', 'messages': []}
    """
    out = {k: v for k, v in body.items() if k not in ROUTING_FIELDS}
    out["model"] = model
    return out


def error_body(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    """An OpenAI-style error object.

    >>> error_body("bad")
    {'error': {'message': 'bad', 'type': 'invalid_request_error', 'code': None}}
    """
    return {"error": {"message": message, "type": kind, "code": None}}


def request_line(method: str, path: str, layer: str, reason: str, status: int | str, stream: bool,
                 seconds: float) -> str:
    """The log line of one request.

    >>> request_line("POST", "/v1/chat/completions", "eu", "header X-User-Region=eu", 200, True, 0.0123)
    'POST /v1/chat/completions -> layer eu (header X-User-Region=eu): 200, stream, 12.3 ms'
    """
    how = "stream" if stream else "json"
    return f"{method} {path} -> layer {layer} ({reason}): {status}, {how}, {seconds * 1000:.1f} ms"


def build_app(table: RoutingTable, upstreams: Mapping[str, Upstream], *, timeout: float = 600.0,
              transport: Any = None, max_connections: int = 256, on_startup: Any = None):
    """The router app for ``table``, every layer's engine in ``upstreams``.

    ``transport`` replaces the network (an ``httpx2.ASGITransport`` in tests); ``on_startup`` is called
    once the app starts (to say where it listens).
    """
    import httpx2
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    missing = [name for name in table.layers if name not in upstreams]
    if missing:
        raise ValueError(f"no engine for layer(s) {missing}")
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:  # noqa: ANN001 - starlette's signature
        limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(timeout, connect=10.0), limits=limits,
                                      transport=transport, trust_env=False) as client:
            state["client"] = client
            if on_startup is not None:
                on_startup()
            yield
        state.clear()

    def client() -> httpx2.AsyncClient:
        if "client" not in state:  # used without its lifespan (a test client that skips it)
            state["client"] = httpx2.AsyncClient(timeout=timeout, transport=transport, trust_env=False)
        return state["client"]

    async def forward(request: Request) -> Response:
        started = time.perf_counter()
        path = request.url.path
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            log.info("%s %s: 400, the body is not a JSON object", request.method, path)
            return JSONResponse(error_body("the request body must be a JSON object"), status_code=400)
        headers = {k.lower(): v for k, v in request.headers.items()}
        layer, reason = pick_layer(table, RequestContext(headers, body))
        up = upstreams[layer]
        stream = bool(body.get("stream"))
        level = logging.WARNING if reason.startswith("unknown region") else logging.INFO
        out_headers = marks(layer, reason)

        def done(status: int | str) -> None:
            log.log(level, request_line(request.method, path, layer, reason, status, stream,
                                        time.perf_counter() - started))

        sent = {k: v for k, v in headers.items() if k in FORWARDED}
        url = up.base_url.rstrip("/") + path.removeprefix("/v1")
        req = client().build_request("POST", url, json=engine_body(body, up.model), headers=sent)
        try:
            resp = await client().send(req, stream=True)
        except httpx2.HTTPError as exc:
            done(502)
            msg = f"layer {layer}: its engine at {up.base_url} did not answer ({type(exc).__name__})"
            return JSONResponse(error_body(msg, "engine_unavailable"), status_code=502, headers=out_headers)
        media = resp.headers.get("content-type")
        if not (stream and resp.status_code == 200):
            try:
                content = await resp.aread()
            finally:
                await resp.aclose()
            done(resp.status_code)
            return Response(content, status_code=resp.status_code, headers=out_headers, media_type=media)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.aiter_raw():
                    yield chunk
            except httpx2.HTTPError as exc:
                log.warning("layer %s: the stream from %s broke: %s", layer, up.base_url, type(exc).__name__)
            finally:
                await resp.aclose()

        async def finish() -> None:
            await resp.aclose()
            done(resp.status_code)

        return StreamingResponse(chunks(), status_code=200,
                                 headers={**out_headers, "Cache-Control": "no-cache"},
                                 media_type=media or "text/event-stream", background=BackgroundTask(finish))

    async def models(request: Request) -> Response:  # noqa: ARG001
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "cai",
                 "root": upstreams[name].model, "core": name == table.core} for name in table.layers]
        return JSONResponse({"object": "list", "data": data})

    async def engine_status(up: Upstream) -> str:
        try:
            resp = await client().get(up.base_url.rstrip("/") + "/models", timeout=5.0)
        except httpx2.HTTPError as exc:
            return f"down ({type(exc).__name__})"
        return "ok" if resp.status_code == 200 else f"down (HTTP {resp.status_code})"

    async def health(request: Request) -> Response:  # noqa: ARG001
        names = list(table.layers)
        found = await asyncio.gather(*(engine_status(upstreams[n]) for n in names))
        layers = {n: {"status": s, "engine": upstreams[n].base_url, "model": upstreams[n].model}
                  for n, s in zip(names, found)}
        ok = all(s == "ok" for s in found)
        return JSONResponse({"status": "ok" if ok else "degraded", "router": "ok", "core": table.core,
                             "layers": layers}, status_code=200 if ok else 503)

    routes = [Route("/v1/chat/completions", forward, methods=["POST"]),
              Route("/v1/completions", forward, methods=["POST"]),
              Route("/v1/models", models, methods=["GET"]),
              Route("/health", health, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan)
