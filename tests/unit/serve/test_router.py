"""The router against a fake upstream: model rewritten, every answer marked, streams passed through,
/v1/models and /health; and 50 concurrent requests (half streaming) over loopback, none lost."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from cai.serve.router import Upstream, build_app
from cai.serve.routing import RoutingTable
from tests.unit.serve.fake_upstream import fake_upstream, serving

LAYERS = ("core", "eu", "us")
TABLE = RoutingTable.model_validate({"layers": {n: f"/m/{n}" for n in LAYERS},
                                     "rules": [{"header": "X-User-Region"}, {"locale": {"de": "eu"}}]})
CHAT = {"model": "anything", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def upstreams(root: str) -> dict[str, Upstream]:
    return {n: Upstream(n, f"{root}/v1", f"model-{n}") for n in LAYERS}


def call(app, method: str, path: str, **kwargs):
    import httpx2

    async def go():
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://router") as c:
            return await c.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def routed():
    import httpx2

    fake = fake_upstream([f"model-{n}" for n in LAYERS])
    app = build_app(TABLE, upstreams("http://engine"), transport=httpx2.ASGITransport(app=fake))
    return app, fake


def test_a_request_goes_to_its_layer_with_the_model_rewritten_and_is_marked(routed, caplog):
    app, fake = routed
    with caplog.at_level(logging.INFO, logger="cai.serve.router"):
        r = call(app, "POST", "/v1/chat/completions", json={**CHAT, "locale": "de-DE"},
                 headers={"Authorization": "Bearer k"})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "answer from model-eu"
    assert r.headers["x-cai-layer"] == "eu"
    assert r.headers["x-cai-route-reason"] == "locale de-DE (locale field)"
    (sent,) = fake.state.bodies
    assert sent["model"] == "model-eu" and "locale" not in sent and sent["messages"] == CHAT["messages"]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("POST /v1/chat/completions -> layer eu (locale de-DE (locale field)): 200, json, ")


def test_an_unknown_region_falls_back_to_core_and_says_so(routed, caplog):
    app, _ = routed
    with caplog.at_level(logging.INFO, logger="cai.serve.router"):
        r = call(app, "POST", "/v1/completions", json={"model": "x", "prompt": "Hi"},
                 headers={"X-User-Region": "mars"})
    assert r.json()["choices"][0]["message"]["content"] == "answer from model-core"
    assert r.headers["x-cai-layer"] == "core"
    assert r.headers["x-cai-route-reason"] == "unknown region 'mars' (header X-User-Region): core layer"
    assert [rec.levelname for rec in caplog.records] == ["WARNING"]
    assert "unknown region 'mars'" in caplog.records[0].getMessage()


def test_a_stream_is_passed_through_event_by_event(routed):
    app, _ = routed
    r = call(app, "POST", "/v1/chat/completions", json={**CHAT, "stream": True},
             headers={"X-User-Region": "us"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-cai-layer"] == "us"
    events = [ln.removeprefix("data: ") for ln in r.text.split("\n\n") if ln]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1])
    assert text == "answer from model-us"


def test_models_health_and_errors(routed):
    app, _ = routed
    assert [m["id"] for m in call(app, "GET", "/v1/models").json()["data"]] == list(LAYERS)
    health = call(app, "GET", "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["layers"]["eu"] == {"status": "ok", "engine": "http://engine/v1",
                                             "model": "model-eu"}
    bad = call(app, "POST", "/v1/chat/completions", content=b"[1, 2]")
    assert bad.status_code == 400 and "JSON object" in bad.json()["error"]["message"]
    down = build_app(TABLE, upstreams("http://127.0.0.1:9"))  # nothing listens on port 9
    r = call(down, "POST", "/v1/chat/completions", json=CHAT, headers={"X-User-Region": "eu"})
    assert r.status_code == 502 and r.headers["x-cai-layer"] == "eu"
    msg = r.json()["error"]["message"]
    assert msg.startswith("layer eu: its engine at http://127.0.0.1:9/v1 did not answer")
    sick = call(down, "GET", "/health")
    assert sick.status_code == 503 and sick.json()["layers"]["core"]["status"].startswith("down")


def test_fifty_concurrent_requests_half_streaming_each_answered_by_its_layer():
    from openai import AsyncOpenAI

    regions = ["eu", "us", "mars", "core", None]
    want = {"eu": "eu", "us": "us", "mars": "core", "core": "core", None: "core"}

    async def one(client, i: int):
        region = regions[i % len(regions)]
        headers = {"X-User-Region": region} if region else {}
        kwargs = {"model": "cai", "messages": CHAT["messages"], "extra_headers": headers}
        if i % 2:
            async with client.chat.completions.with_streaming_response.create(stream=True, **kwargs) as resp:
                layer = resp.headers["x-cai-layer"]
                text = ""
                async for chunk in await resp.parse():
                    text += chunk.choices[0].delta.content or ""
        else:
            resp = await client.chat.completions.with_raw_response.create(**kwargs)
            layer, text = resp.headers["x-cai-layer"], resp.parse().choices[0].message.content
        return region, layer, text

    async def load(router_url: str):
        async with AsyncOpenAI(base_url=f"{router_url}/v1", api_key="x", max_retries=0, timeout=60) as client:
            return await asyncio.gather(*(one(client, i) for i in range(50)))

    with serving(fake_upstream([f"model-{n}" for n in LAYERS], delay=0.05)) as engine:
        with serving(build_app(TABLE, upstreams(engine))) as router:
            results = asyncio.run(load(router))
    assert len(results) == 50
    for region, layer, text in results:
        assert layer == want[region] and text == f"answer from model-{want[region]}", (region, layer, text)
