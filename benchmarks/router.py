"""The latency the ``cai serve`` router adds: the same requests straight to an engine and through the router.

On loopback, one process each: a fake OpenAI-compatible engine (starlette under uvicorn, answering at
once, so what is left is HTTP and the router's own work) and the router (:func:`cai.serve.router.build_app`
under uvicorn, one layer per region, all on that engine); this script is the client (``httpx2``,
keep-alive, one request at a time). With ``--model DIR`` the engine is a real ``transformers serve`` of
that model instead (started by :class:`cai.engines.manager.EngineManager`, ``--max-tokens`` greedy
tokens). Printed for plain and streaming chat completions: p50/p95 of direct and routed calls, the
router's added p50 and the routed/direct ratio of p50, from this one run.

Usage: python benchmarks/router.py [--requests 300] [--model DIR --max-tokens 8]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAYERS = ("core", "eu", "us")


def fake_engine_app():
    import json

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def complete(request):
        body = await request.json()
        if body.get("stream"):
            async def events():
                for word in ("answer", " from", f" {body['model']}"):
                    chunk = {"object": "chat.completion.chunk",
                             "choices": [{"index": 0, "delta": {"content": word}}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        message = {"role": "assistant", "content": f"answer from {body['model']}"}
        return JSONResponse({"object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop", "message": message}]})

    async def models(request):
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    return Starlette(routes=[Route("/v1/chat/completions", complete, methods=["POST"]),
                             Route("/v1/models", models)])


def run_fake_engine(port: int) -> None:
    import uvicorn

    uvicorn.run(fake_engine_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_router(port: int, engine_url: str, model: str) -> None:
    import logging

    import uvicorn

    from cai.serve.router import Upstream, build_app
    from cai.serve.routing import RoutingTable

    logging.getLogger("cai").setLevel(logging.WARNING)  # the per-request log lines, off the screen
    table = RoutingTable.model_validate({"layers": {n: f"/m/{n}" for n in LAYERS}})
    ups = {n: Upstream(n, engine_url, model) for n in LAYERS}
    uvicorn.run(build_app(table, ups), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wait_up(url: str, timeout: float = 60.0) -> None:
    import httpx2

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx2.get(url, timeout=2, trust_env=False).status_code < 500:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def timings(client, url: str, body: dict, n: int, headers: dict) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        if body.get("stream"):
            with client.stream("POST", url, json=body, headers=headers) as r:
                for _ in r.iter_raw():
                    pass
        else:
            r = client.post(url, json=body, headers=headers)
        assert r.status_code == 200, r.text
        out.append(time.perf_counter() - start)
    return out


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300, help="timed requests per case and side")
    ap.add_argument("--model", type=Path, help="a model folder to serve with transformers serve instead")
    ap.add_argument("--max-tokens", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import httpx2

    from cai.engines.process import free_port

    ctx = mp.get_context("spawn")
    procs, manager = [], None
    if args.model is None:
        engine_port = free_port()
        procs.append(ctx.Process(target=run_fake_engine, args=(engine_port,), daemon=True))
        procs[-1].start()
        engine_url, model = f"http://127.0.0.1:{engine_port}/v1", "fake"
        what = "fake engine (answers at once)"
    else:
        from cai.engines.commands import Checkpoint
        from cai.engines.manager import EngineManager

        manager = EngineManager(tempfile.mkdtemp(prefix="cai-bench-router-"), startup_timeout=300)
        ck = Checkpoint(str(args.model.resolve()), dtype="float32", args={"device": "cpu"})
        spec = manager.backend_spec("core", "transformers", ck)
        engine_url, model = spec.base_url[0], spec.name
        what = f"transformers serve {args.model} ({args.max_tokens} greedy tokens)"
    router_port = free_port()
    procs.append(ctx.Process(target=run_router, args=(router_port, engine_url, model), daemon=True))
    procs[-1].start()
    router_url = f"http://127.0.0.1:{router_port}/v1"
    try:
        wait_up(f"{engine_url}/models")
        wait_up(f"{router_url}/models")
        print(f"{what}; {args.requests} requests per case, one at a time; "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'case':<10} {'direct p50/p95 ms':>18} {'routed p50/p95 ms':>18} {'added p50 ms':>13} "
              f"{'ratio':>6}")
        with httpx2.Client(timeout=120, trust_env=False) as client:
            for stream in (False, True):
                body = {"model": model, "messages": [{"role": "user", "content": "Hi"}],
                        "max_tokens": args.max_tokens, "stream": stream}
                warm = max(10, args.requests // 10)
                timings(client, f"{engine_url}/chat/completions", body, warm, {})
                timings(client, f"{router_url}/chat/completions", body, warm, {"X-User-Region": "eu"})
                direct, routed = [], []
                for _ in range(5):  # interleaved, so drifting load hits both sides alike
                    direct += timings(client, f"{engine_url}/chat/completions", body, args.requests // 5, {})
                    routed += timings(client, f"{router_url}/chat/completions", body, args.requests // 5,
                                      {"X-User-Region": "eu"})
                d50, d95, r50, r95 = pct(direct, 50), pct(direct, 95), pct(routed, 50), pct(routed, 95)
                name = "stream" if stream else "json"
                print(f"{name:<10} {d50:>8.2f} / {d95:<8.2f} {r50:>8.2f} / {r95:<8.2f} {r50 - d50:>13.2f} "
                      f"{r50 / d50:>5.2f}x")
    finally:
        for p in procs:
            p.terminate()
            p.join(10)
        if manager is not None:
            manager.close()


if __name__ == "__main__":
    main()
