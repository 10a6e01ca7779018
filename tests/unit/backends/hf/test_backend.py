"""The local transformers backend on a tiny random model: generation and scoring."""

from __future__ import annotations

import math

import pytest
import torch

from cai.backends import Backend, make_backend
from cai.backends.hf.backend import HFBackend
from cai.core.errors import CaiError
from cai.core.records import SamplingParams

CHATS = [[{"role": "user", "content": "hi " * k}] for k in range(1, 8)]


@pytest.fixture(scope="module")
def backend(tiny_model_dir) -> HFBackend:
    return HFBackend(str(tiny_model_dir), batch_size=3)


def _reference_greedy(backend: HFBackend, chat, max_new_tokens: int) -> str:
    ids = torch.tensor([backend.render(chat)])
    out = backend.lm.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False
    )
    return backend.tokenizer.decode(out[0][ids.shape[1] :], skip_special_tokens=True)


def test_is_a_backend(backend):
    assert isinstance(backend, Backend)
    assert backend.kind == "hf"


def test_greedy_matches_model_generate_one_by_one(backend):
    gens = backend.generate(CHATS, SamplingParams(max_new_tokens=10))
    assert len(gens) == len(CHATS)
    for i, (chat, gen) in enumerate(zip(CHATS, gens)):
        assert gen.index == i and gen.sample == 0
        assert gen.text == _reference_greedy(backend, chat, 10)
        assert gen.prompt_tokens == len(backend.render(chat))
        assert gen.finish_reason in ("stop", "length")
        assert gen.completion_tokens <= 10


def test_length_finish_reason(backend):
    gens = backend.generate(CHATS[:2], SamplingParams(max_new_tokens=1))
    for g in gens:
        assert g.completion_tokens <= 1
        assert g.finish_reason in ("length", "stop")
    assert any(g.finish_reason == "length" for g in gens)


def test_samples_are_chat_major_and_seeded_per_request(backend):
    params = SamplingParams(max_new_tokens=8, temperature=1.0, seed=3, n=3)
    a = backend.generate(CHATS[:4], params)
    assert [(g.index, g.sample) for g in a] == [(i, s) for i in range(4) for s in range(3)]
    # Same request, other batch composition and order: same text.
    backend.batch_size = 1
    try:
        b = backend.generate(CHATS[:4][::-1], params)
    finally:
        backend.batch_size = 3
    by_key = {(CHATS.index(CHATS[:4][::-1][g.index]), g.sample): g.text for g in b}
    assert all(by_key[(g.index, g.sample)] == g.text for g in a)
    # Samples of one chat differ in seed; another base seed changes the draw.
    assert len({g.seed for g in a[:3]}) == 3
    c = backend.generate(CHATS[:4], params.model_copy(update={"seed": 4}))
    assert [g.text for g in c] != [g.text for g in a]


def test_stop_strings_cut_text(backend):
    free = backend.generate(CHATS[:1], SamplingParams(max_new_tokens=20, temperature=1.0, seed=1))[0]
    assert len(free.text) > 3
    stop = free.text[2:4]
    cut = backend.generate(
        CHATS[:1], SamplingParams(max_new_tokens=20, temperature=1.0, seed=1, stop=(stop,))
    )[0]
    assert stop not in cut.text
    assert free.text.startswith(cut.text)
    assert cut.finish_reason == "stop"


def test_score_shared_prefix_equals_naive(backend, tiny_model_dir):
    conts = [["(A)", "(B)"], ["(A)"], ["yes", "no", "maybe so"], ["A"], [" B"], ["(A) is better"], ["x"]]
    shared = backend.score(CHATS, conts)
    naive = HFBackend(
        str(tiny_model_dir),
        batch_size=3,
        reuse_prefix=False,
        model_obj=backend.lm,
        tokenizer=backend.tokenizer,
    ).score(CHATS, conts)
    assert [len(s) for s in shared] == [len(c) for c in conts]
    for a, b in zip(shared, naive):
        for x, y in zip(a, b):
            assert math.isfinite(x) and x < 0
            assert x == pytest.approx(y, abs=1e-4)


def test_score_matches_hand_computed_logprob(backend):
    chat = CHATS[2]
    prefix = backend.render(chat)
    cont = backend.tokenizer("(B)", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prefix + cont])
    with torch.no_grad():
        logp = torch.log_softmax(backend.lm(ids).logits[0].float(), -1)
    expected = sum(float(logp[len(prefix) - 1 + t, tok]) for t, tok in enumerate(cont))
    assert backend.score([chat], [["(B)"]])[0][0] == pytest.approx(expected, abs=1e-4)


def test_score_continues_a_final_assistant_message(backend):
    chat = [{"role": "user", "content": "Which?"}, {"role": "assistant", "content": "The answer is ("}]
    rendered = backend.tokenizer.decode(backend.render(chat))
    assert rendered.rstrip().endswith("The answer is (")
    (scores,) = backend.score([chat], [["A", "B"]])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)


def test_make_backend_and_unknown_kind(tiny_model_dir):
    assert make_backend("hf", str(tiny_model_dir)).kind == "hf"
    with pytest.raises(CaiError, match="unknown backend"):
        make_backend("nope", "x")


def test_model_without_chat_template_is_a_clear_error(tiny_model_no_template_dir):
    with pytest.raises(CaiError, match="no chat template"):
        HFBackend(str(tiny_model_no_template_dir))


def test_chat_template_option_rescues_a_model_without_one(tiny_model_no_template_dir, tmp_path):
    from tests.helpers.tiny import CHATML

    tpl = tmp_path / "chatml.jinja"
    tpl.write_text(CHATML)
    b = HFBackend(str(tiny_model_no_template_dir), chat_template=str(tpl))
    assert b.generate(CHATS[:1], SamplingParams(max_new_tokens=2))[0].prompt_tokens > 0


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(CaiError, match="does not exist"):
        HFBackend(str(tmp_path / "nope"))


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CaiError, match="cannot load model"):
        HFBackend("no-such-org/no-such-model-xyz")
