"""Data-parallel generation: the openai backend over two real `transformers serve` servers on loopback.

`cai generate` with two ``--base-url`` shares the requests between the servers
round robin (each server's own log counts what it answered), and greedy records
are the same, id for id, as one server gives. In-process, a request hook sees
that no more than ``concurrency`` requests are ever in flight over both servers
together, and that the cap is reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cai.backends.openai.backend import OpenAIBackend
from cai.core.records import SamplingParams
from tests.helpers.paths import ROOT
from tests.helpers.servers import server_fixture

ENV = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | {"HF_HUB_OFFLINE": "1"}

servers = server_fixture(lambda request: request.getfixturevalue("tiny_model_dir"), count=2)


def answered(server) -> int:
    return server.log_path.read_text().count('"POST /v1/chat/completions HTTP/1.1" 200')


def generate(prompts: Path, out: Path, urls: list[str], model: str, concurrency: int) -> dict[str, str]:
    cmd = [sys.executable, "-m", "cai", "generate", "-p", str(prompts), "-o", str(out), "--backend", "openai",
           "-m", model, "--temperature", "0", "--max-new-tokens", "8", "--concurrency", str(concurrency)]
    for url in urls:
        cmd += ["--base-url", url]
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({x["id"] for x in recs}) == len(recs)
    return {x["id"]: x["completion"][0]["content"] for x in recs}


@pytest.mark.integration
def test_two_servers_share_the_work_and_give_the_same_records_as_one(servers, tmp_path):
    n = 10
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"How do I bake bread {i}?"}) + "\n" for i in range(n)))
    urls = [s.base_url for s in servers]
    before = [answered(s) for s in servers]
    two = generate(prompts, tmp_path / "two.jsonl", urls, servers[0].model, concurrency=4)
    shares = [answered(s) - b for s, b in zip(servers, before)]
    assert shares == [n // 2, n // 2]  # round robin: each server answered half
    before = [answered(s) for s in servers]
    one = generate(prompts, tmp_path / "one.jsonl", urls[:1], servers[0].model, concurrency=1)
    assert [answered(s) - b for s, b in zip(servers, before)] == [n, 0]
    assert one == two  # same ids, same greedy answers: where a request ran does not matter


@pytest.mark.integration
def test_concurrency_cap_holds_over_both_servers(servers):
    lock = asyncio.Lock()
    active = {"total": 0, "peak": 0}
    per_url: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def count(k, url):
        async with lock:
            active["total"] += 1
            active["peak"] = max(active["peak"], active["total"])
            per_url[url] = per_url.get(url, 0) + 1
        try:
            await asyncio.sleep(0.05)  # hold the slot a moment so requests overlap
            yield
        finally:
            async with lock:
                active["total"] -= 1

    urls = [s.base_url for s in servers]
    backend = OpenAIBackend(servers[0].model, urls, concurrency=3, request_hook=count)
    gens = backend.generate([[{"role": "user", "content": f"q{i}"}] for i in range(6)],
                            SamplingParams(max_new_tokens=3, n=2))
    assert len(gens) == 12 and active["total"] == 0
    assert active["peak"] == 3  # reached, never passed
    assert per_url == {urls[0]: 6, urls[1]: 6}
