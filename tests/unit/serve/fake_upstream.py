"""A tiny OpenAI-compatible upstream (starlette) for the router tests, and uvicorn on loopback in a thread.

The fake answers every chat or text completion with ``"answer from MODEL"`` (the ``model`` field it
got), as JSON or, for ``"stream": true``, as three server-sent events and ``[DONE]``; ``GET
/v1/models`` lists ``models``. It records every body it received in ``app.state.bodies``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator

from cai.engines.process import free_port


def fake_upstream(models: list[str], delay: float = 0.0):
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def complete(request):
        body = await request.json()
        request.app.state.bodies.append(body)
        model = body.get("model")
        if model not in models:
            return JSONResponse({"detail": f"not served: {model}"}, status_code=404)
        words = ["answer", " from", f" {model}"]
        if not body.get("stream"):
            await asyncio.sleep(delay)
            message = {"role": "assistant", "content": "".join(words)}
            return JSONResponse({"id": "x", "object": "chat.completion", "created": 0, "model": model,
                                 "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}})

        async def events():
            for word in words:
                await asyncio.sleep(delay / len(words))
                chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": model,
                         "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def listed(request):
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model"} for m in models]})

    app = Starlette(routes=[Route("/v1/chat/completions", complete, methods=["POST"]),
                            Route("/v1/completions", complete, methods=["POST"]),
                            Route("/v1/models", listed)])
    app.state.bodies = []
    return app


@contextlib.contextmanager
def serving(app, port: int | None = None) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port in a thread; yields its ``http://host:port``."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
