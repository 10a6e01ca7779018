"""OpenAIBackend against real ``transformers serve`` processes and a small stub server.

The ``transformers serve`` servers run a copy of the tiny model whose generation
config samples (``do_sample=True``): the server only switches sampling off for
``temperature == 0`` and never on, so with the stock tiny model every request
would be greedy whatever its temperature. The stub (a plain ``http.server`` on
loopback) answers what ``transformers serve`` cannot: logprobs, 401 and 404.

What ``transformers serve`` does, as these tests pin down: ``seed`` is honoured
(it seeds torch globally right before the request is queued, so only requests
that do not overlap are reproducible: the seed tests use ``concurrency=1``),
``stop`` is honoured (mapped to ``stop_strings``; the server keeps the stop
string in the text, the backend drops it), ``max_tokens`` is honoured with ``finish_reason="length"``,
``usage`` is returned, and ``logprobs``/``top_logprobs`` are ignored (no logprobs come back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import pickle
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cai.backends.openai.backend import OpenAIBackend
from cai.backends.protocol import Backend, ScoringUnsupported, request_seed
from cai.core.errors import CaiError
from cai.core.records import SamplingParams
from tests.helpers.servers import server_fixture

SECRET = "sk-cai-test-DO-NOT-LEAK-7f3a9c"


def _sampling_copy(request: pytest.FixtureRequest) -> Path:
    """The tiny model, with a generation config that samples when temperature > 0."""
    src = Path(request.getfixturevalue("tiny_model_dir"))
    dst = request.getfixturevalue("tmp_path_factory").mktemp("tiny-model-sampling")
    shutil.copytree(src, dst, dirs_exist_ok=True)
    config_path = dst / "generation_config.json"
    config = json.loads(config_path.read_text())
    config.update(do_sample=True, top_k=0, top_p=1.0)
    config_path.write_text(json.dumps(config))
    return dst


# Two servers, started in parallel once for the module: most tests use the first.
servers = server_fixture(_sampling_copy, count=2, scope="module")


@pytest.fixture(scope="module")
def server(servers):
    return servers[0]


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# ----- configuration, keys and secrets ----------------------------------------------------------------


def test_satisfies_protocol_and_loopback_needs_no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    backend = OpenAIBackend("m", "http://127.0.0.1:8000/v1")
    assert isinstance(backend, Backend)
    assert backend.kind == "openai" and backend.model == "m"


def test_missing_api_key_for_remote_url(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(CaiError, match="environment variable OPENAI_API_KEY is not set") as info:
        OpenAIBackend("gpt-x", ["http://127.0.0.1:8000/v1", "https://api.example.com/v1"])
    assert "--api-key-env" in str(info.value)
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(CaiError, match="MY_KEY"):
        OpenAIBackend("gpt-x", "https://api.example.com/v1", api_key_env="MY_KEY")


@pytest.mark.parametrize("url", ["localhost:8000/v1", "ftp://host/v1", "http:///v1", ""])
def test_invalid_base_url(url):
    with pytest.raises(CaiError, match="invalid base URL"):
        OpenAIBackend("m", url)


def test_unreachable_server_names_url(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    backend = OpenAIBackend("m", "http://127.0.0.1:9/v1", max_retries=0, timeout=2.0)
    with pytest.raises(CaiError) as info:
        backend.generate([chat("hi")], SamplingParams(max_new_tokens=2))
    message = str(info.value)
    assert "cannot reach OpenAI-compatible server at http://127.0.0.1:9/v1: connection refused" in message
    assert "is the server running?" in message and SECRET not in message
    with pytest.raises(CaiError, match="127.0.0.1:9"):
        backend.score([chat("hi")], [["A", "B"]])


def test_secret_never_shown(monkeypatch, stub):
    monkeypatch.setenv("CAI_TEST_KEY", SECRET)
    backend = OpenAIBackend("auth", ["https://api.example.com/v1", stub.base_url], api_key_env="CAI_TEST_KEY")
    assert SECRET not in repr(backend) and SECRET not in str(vars(backend))
    assert SECRET.encode() not in pickle.dumps(backend)
    # The stub echoes the key it got in its 401 message, as some servers do.
    with pytest.raises(CaiError) as info:
        OpenAIBackend("auth", stub.base_url, api_key_env="CAI_TEST_KEY", max_retries=0).generate(
            [chat("hi")], SamplingParams()
        )
    message = str(info.value)
    assert SECRET not in message and SECRET not in repr(info.value)
    assert "authentication failed" in message and stub.base_url in message and "CAI_TEST_KEY" in message
    assert stub.seen_keys == [SECRET]


# ----- a stub server: logprobs and error statuses --------------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    state: dict

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.state["bodies"].append(body)
        self.state["keys"].append(self.headers.get("Authorization", "").removeprefix("Bearer "))
        model = body["model"]
        if model == "auth":
            key = self.headers.get("Authorization", "")
            return self._send(401, {"error": {"message": f"Incorrect API key provided: {key}"}})
        if model == "missing":
            return self._send(404, {"error": {"message": "The model `missing` does not exist"}})
        if model == "no-logprobs-allowed" and body.get("logprobs"):
            return self._send(400, {"error": {"message": "logprobs is not supported for this model"}})
        if model == "slow":
            time.sleep(1.0)
        if model == "bad":
            return self._send(400, {"error": {"message": "temperature:\n must be <= 2"}})
        cap = {"tgi": 5, "tgi-no-top-n": 0}.get(model)
        if cap is not None and body.get("top_logprobs", 0) > cap:  # TGI's router, --max-top-n-tokens cap
            given = body["top_logprobs"]
            message = f"Input validation error: `top_n_tokens` must be >= 0 and <= {cap}. Given: {given}"
            return self._send(422, {"error": message, "error_type": "validation"})
        listed = (("(", -0.1), ("A", -1.0), ("B", -2.0), ("x", -8.0))
        if model == "no-options":  # neither option among the top logprobs
            listed = (("(", -0.1), ("The", -2.0), ("x", -8.0))
        top = [{"token": t, "logprob": lp, "bytes": None} for t, lp in listed[: body.get("top_logprobs", 20)]]
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": "(A)"},
            "finish_reason": "length",
            "logprobs": {"content": [{"token": "(", "logprob": -0.1, "bytes": None, "top_logprobs": top}]}
            if body.get("logprobs")
            else None,
        }
        usage = {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
        response = {"id": "x", "object": "chat.completion", "created": 0, "model": model, "choices": [choice]}
        self._send(200, {**response, "usage": usage})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up ("slow")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


class StubServer:
    def __init__(self):
        self.state: dict = {"bodies": [], "keys": []}
        handler = type("Handler", (_Stub,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def bodies(self) -> list[dict]:
        return self.state["bodies"]

    @property
    def seen_keys(self) -> list[str]:
        return self.state["keys"]


@pytest.fixture
def stub():
    server = StubServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_score_reads_top_logprobs(stub):
    backend = OpenAIBackend("m", stub.base_url)
    chats = [
        chat("Which is better?"),
        [*chat("Think first."), {"role": "assistant", "content": "Reasoning. Answer: "}],
    ]
    scores = backend.score(chats, [["(A)", "(B)"], ["(A)", "(B)", "(C)"]])
    assert scores == [[-1.0, -2.0], [-1.0, -2.0, -8.0]]
    # Requests run concurrently: tell them apart by content, not arrival order.
    first, second = sorted(stub.bodies, key=lambda b: b["messages"][-1]["role"] == "assistant")
    assert first["logprobs"] is True and first["top_logprobs"] == 20 and first["max_tokens"] == 1
    assert "continue_final_message" not in first
    assert second["continue_final_message"] is True and second["add_generation_prompt"] is False
    assert second["messages"][-1] == {"role": "assistant", "content": "Reasoning. Answer: "}


def test_score_requests_use_temperature_one(stub):
    # Some servers return degenerate log-probs at temperature 0: the scoring request asks for the plain
    # softmax.
    OpenAIBackend("m", stub.base_url).score([chat("q")], [["A", "B"]])
    assert [b["temperature"] for b in stub.bodies] == [1.0]


def test_neither_option_listed_is_a_failed_read_not_a_coin_flip(stub):
    from cai.stages.label.feedback import Ask, FeedbackReader, option_probability
    from tests.helpers.fakes import constitution

    backend = OpenAIBackend("no-options", stub.base_url)
    scores = backend.score([chat("q")], [["A", "B"]])
    assert scores == [[-math.inf, -math.inf]]
    assert option_probability(*scores[0]) is None
    const = constitution()
    reads = FeedbackReader(backend, const, few_shot=False).read(
        [Ask(prompt=[], answer_a="x", answer_b="y", principles=const.principles[:1])])[0]
    assert [j.p_option_a for j in reads] == [None, None] and all(j.error for j in reads)
    assert all(j.method == "logprobs" for j in reads)  # a counted failed read, not a fallback


def test_neither_option_listed_is_a_counted_rubric_failure(stub):
    from cai.constitution.load import load_constitution
    from cai.core.records import CompletionRecord, Message, Provenance
    from cai.eval.aggregate import harm_eval
    from cai.eval.judging import rubric_judgements

    rec = CompletionRecord(id="a0", prompt_id="p0", prompt=[Message(role="user", content="q")],
                           completion=[Message(role="assistant", content="an answer")], finish_reason="stop",
                           provenance=Provenance())
    [judged] = rubric_judgements([("m", rec)], OpenAIBackend("no-options", stub.base_url),
                                 load_constitution("harmless"), seed=0)
    assert judged.value is None and judged.error
    harm = harm_eval([rec], {rec.id: judged})
    assert harm.judge_failures == 1 and (harm.harmful is None or harm.harmful.n == 0)  # not a "not harmful"


@pytest.mark.parametrize("answer", ["Sure, here is how to bake bread.", "Certainly", "a b"])
def test_multi_token_continuations_are_unsupported(stub, answer):
    # Only the first generated position is visible: a whole answer (the eval's KL probe) cannot be scored.
    backend = OpenAIBackend("m", stub.base_url)
    with pytest.raises(ScoringUnsupported, match="only short options") as info:
        backend.score([chat("q"), chat("r")], [["A", "B"], [answer]])
    assert "first generated token" in str(info.value)
    assert stub.bodies == []  # refused before any request
    assert backend.score([chat("q")], [["(A)", " B ", "Yes", "No", "[[1]]"]])  # short options are fine
    with pytest.raises(ValueError, match="empty continuation"):
        backend.score([chat("q")], [["A", ""]])
    # a blank answer: not an option either
    with pytest.raises(ScoringUnsupported, match="only short options"):
        backend.score([chat("q")], [["A", "  "]])


def test_tgi_top_n_tokens_cap_is_learned_from_its_422(stub):
    backend = OpenAIBackend("tgi", stub.base_url, max_retries=0)
    assert backend.score([chat("q")], [["(A)", "(B)"]]) == [[-1.0, -2.0]]
    assert [b["top_logprobs"] for b in stub.bodies] == [20, 5]  # rejected, then retried once at the cap
    assert backend.score([chat("q2"), chat("q3")], [["A", "B"], ["A", "B"]]) == [[-1.0, -2.0]] * 2
    assert [b["top_logprobs"] for b in stub.bodies[2:]] == [5, 5]  # remembered
    with pytest.raises(ScoringUnsupported, match="top_n_tokens"):
        OpenAIBackend("tgi-no-top-n", stub.base_url, max_retries=0).score([chat("q")], [["A", "B"]])


def test_score_rejected_logprobs_is_unsupported(stub):
    backend = OpenAIBackend("no-logprobs-allowed", stub.base_url, max_retries=0)
    with pytest.raises(ScoringUnsupported, match="fall back to generated answers") as info:
        backend.score([chat("q")], [["A", "B"]])
    assert stub.base_url in str(info.value)


def test_http_errors_become_one_line(stub):
    with pytest.raises(CaiError, match=r"model 'missing' not found at .*/v1 \(HTTP 404\)") as info:
        OpenAIBackend("missing", stub.base_url, max_retries=0).generate([chat("q")], SamplingParams())
    assert stub.base_url in str(info.value)
    with pytest.raises(CaiError, match=r"returned HTTP 400: temperature: must be <= 2$"):
        OpenAIBackend("bad", stub.base_url, max_retries=0).generate([chat("q")], SamplingParams())


def test_timeout_names_url(stub):
    backend = OpenAIBackend("slow", stub.base_url, max_retries=0, timeout=0.3)
    with pytest.raises(CaiError, match=r"cannot reach OpenAI-compatible server at .*: timed out after 0.3s"):
        backend.generate([chat("q")], SamplingParams())


def test_generate_request_fields(stub):
    params = SamplingParams(max_new_tokens=9, temperature=0.7, top_p=0.9, seed=5, n=2, stop=("\n\n",))
    gens = OpenAIBackend("m", stub.base_url).generate([chat("q")], params)
    assert [g.text for g in gens] == ["(A)", "(A)"] and gens[0].prompt_tokens == 7
    bodies = sorted(stub.bodies, key=lambda b: b["seed"])
    seeds = sorted(request_seed(5, chat("q"), s) for s in range(2))
    assert [b["seed"] for b in bodies] == seeds
    for b in bodies:
        assert (
            b["max_tokens"] == 9 and b["temperature"] == 0.7 and b["top_p"] == 0.9 and b["stop"] == ["\n\n"]
        )
        assert "n" not in b and "logprobs" not in b


def test_works_inside_a_running_event_loop(stub):
    backend = OpenAIBackend("m", stub.base_url)

    async def inside():
        return backend.generate([chat("q")], SamplingParams())

    assert asyncio.run(inside())[0].text == "(A)"


# ----- against real transformers serve --------------------------------------------------------------------


@pytest.mark.integration
def test_generate_order_counts_and_length(server):
    backend = OpenAIBackend(server.model, server.base_url, concurrency=4)
    chats = [chat("hi " * (1 + 4 * i)) for i in range(3)]
    gens = backend.generate(chats, SamplingParams(max_new_tokens=5, n=2))
    assert [(g.index, g.sample) for g in gens] == [(i, s) for i in range(3) for s in range(2)]
    assert all(g.finish_reason == "length" and g.completion_tokens == 5 for g in gens)
    prompt_tokens = [g.prompt_tokens for g in gens]
    assert prompt_tokens[0] == prompt_tokens[1] < prompt_tokens[2] == prompt_tokens[3] < prompt_tokens[4]
    assert [g.seed for g in gens] == [request_seed(0, chats[i], s) for i in range(3) for s in range(2)]
    one = backend.generate(chats[:1], SamplingParams(max_new_tokens=1))
    assert one[0].finish_reason == "length" and one[0].completion_tokens == 1


@pytest.mark.integration
def test_seed_reproducible_with_temperature(server):
    # transformers serve seeds torch globally per request: reproducible for non-overlapping requests.
    backend = OpenAIBackend(server.model, server.base_url, concurrency=1)
    params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=3, n=2)
    chats = [chat("Tell me about bread."), chat("And the fox?")]
    first = [g.text for g in backend.generate(chats, params)]
    assert first == [g.text for g in backend.generate(chats, params)]
    assert first != [g.text for g in backend.generate(chats, params.model_copy(update={"seed": 4}))]
    assert first[0] != first[1]  # two samples of one chat have their own seeds


@pytest.mark.integration
def test_stop_strings_honoured(server):
    backend = OpenAIBackend(server.model, server.base_url, concurrency=1)
    params = SamplingParams(max_new_tokens=40, temperature=1.0, seed=11)
    full = backend.generate([chat("hello")], params)[0].text
    stop_char = next(ch for ch in full[2:] if ch.isalnum())
    cut = full.index(stop_char)
    stopped = backend.generate([chat("hello")], params.model_copy(update={"stop": (stop_char,)}))[0]
    assert stopped.finish_reason == "stop" and stopped.completion_tokens < 40
    assert stopped.text.startswith(full[:cut]) and len(stopped.text) < len(full)
    assert stop_char not in stopped.text  # dropped, as OpenAI does, though this server keeps it


@pytest.mark.integration
def test_concurrency_cap(server):
    active, peak = 0, 0

    @contextlib.asynccontextmanager
    async def count(k, url):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            yield
        finally:
            active -= 1

    backend = OpenAIBackend(server.model, server.base_url, concurrency=2, request_hook=count)
    gens = backend.generate([chat(f"q{i}") for i in range(4)], SamplingParams(max_new_tokens=3, n=2))
    assert len(gens) == 8 and peak == 2 and active == 0


@pytest.mark.integration
def test_two_servers_round_robin(servers):
    seen: dict[int, str] = {}

    @contextlib.asynccontextmanager
    async def record(k, url):
        seen[k] = url
        yield

    def answered() -> list[int]:  # requests each server logged
        return [s.log_path.read_text().count('"POST /v1/chat/completions HTTP/1.1" 200') for s in servers]

    urls = [s.base_url for s in servers]
    backend = OpenAIBackend(servers[0].model, urls, concurrency=4, request_hook=record)
    chats = [chat(f"question {i}") for i in range(3)]
    before = answered()
    gens = backend.generate(chats, SamplingParams(max_new_tokens=4, n=2))
    assert [(g.index, g.sample) for g in gens] == [(i, s) for i in range(3) for s in range(2)]
    assert seen == {k: urls[k % 2] for k in range(6)}
    assert [a - b for a, b in zip(answered(), before, strict=True)] == [3, 3]


@pytest.mark.integration
def test_score_on_transformers_serve_is_unsupported(server):
    backend = OpenAIBackend(server.model, server.base_url)
    with pytest.raises(ScoringUnsupported, match="returned no logprobs") as info:
        backend.score([chat("(A) or (B)?")], [["(A)", "(B)"]])
    assert server.base_url in str(info.value) and "fall back" in str(info.value)
    continued = [*chat("(A) or (B)?"), {"role": "assistant", "content": "The answer is"}]
    with pytest.raises(ScoringUnsupported, match="rejected a scoring request"):
        backend.score([continued], [["(A)", "(B)"]])


@pytest.mark.integration
def test_server_rejections_are_one_line_errors(server):
    backend = OpenAIBackend("not-the-model", server.base_url, max_retries=0)
    with pytest.raises(CaiError, match=r"HTTP 400: Server is pinned to"):
        backend.generate([chat("q")], SamplingParams(max_new_tokens=1))
    # transformers serve rejects continue_final_message, so it cannot continue an assistant turn.
    continued = [*chat("q"), {"role": "assistant", "content": "Step 1:"}]
    with pytest.raises(CaiError, match="cannot continue a final assistant message") as info:
        OpenAIBackend(server.model, server.base_url).generate([continued], SamplingParams(max_new_tokens=1))
    assert "HTTP 422" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.integration
def test_cai_generate_cli_against_transformers_serve(server, tmp_path):
    """`cai generate --backend openai` end to end against a real server on loopback, resumable."""
    import os
    import subprocess
    import sys

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "cai", "generate", "-p", str(prompts), "-o", str(out),
            "--backend", "openai", "--base-url", server.base_url, "-m", server.model, "--max-new-tokens",
            "4", "--n", "2"]
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 6 and len({x["id"] for x in recs}) == 6
    assert all(x["provenance"]["backend"] == "openai" and x["provenance"]["model"] == server.model
               for x in recs)
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "nothing to do" in r.stderr
    dead = [sys.executable, "-m", "cai", "generate", "-p", str(prompts), "-o", str(tmp_path / "dead.jsonl"),
            "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "-m", server.model,
            "--max-retries", "0"]
    r = subprocess.run(dead, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot reach" in r.stderr and "http://127.0.0.1:9/v1" in r.stderr
