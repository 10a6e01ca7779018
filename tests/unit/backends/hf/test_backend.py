"""The local transformers backend on a tiny random model: generation and scoring."""

from __future__ import annotations

import math

import pytest
import torch

from cai.backends import Backend, BackendSpec
from cai.backends.hf.backend import HFBackend
from cai.backends.spec import spec_from_options
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


def test_generate_and_score_raise_no_deprecation_warnings(backend):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # transformers' FutureWarning on a renamed kwarg would raise here
        backend.generate(CHATS[:2], SamplingParams(max_new_tokens=4))
        backend.score([CHATS[0], CHATS[1]], [["yes", "no"], ["yes", "no"]])


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


def test_backend_spec_builds_and_refuses_an_unknown_kind(tiny_model_dir):
    assert BackendSpec(name=str(tiny_model_dir)).build().kind == "hf"
    with pytest.raises(CaiError, match="unknown backend"):
        spec_from_options("nope", "x")


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


# ----- SentencePiece-style tokenizers: an option letter on its own is not the letter in running text ------

SP_TEMPLATE = (
    "{% for m in messages %}{{ '<s>' + m['role'] + ': ' + m['content'] }}"
    "{% if not loop.last or m['role'] != 'assistant' %}{{ '</s>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant: ' }}{% endif %}"
)
SP_CHAT = [{"role": "user", "content": "Which is kinder?"},
           {"role": "assistant", "content": "The better response is ("}]


def _sentencepiece_backend(pieces: list[str]) -> HFBackend:
    """A tiny random Llama behind a Unigram tokenizer with a Metaspace pre-tokenizer (``▁`` before each word).

    As in Llama-2 and Mistral v0.x, ``"A"`` alone encodes as ``▁A`` (a word start) while ``is (A`` ends
    in ``▁(`` + ``A`` (or in one merged ``▁(A`` when that piece exists).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    chars = sorted(set("".join(pieces) + "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ():?!.,"))
    vocab = [(p, 0.0) for p in specials] + [(c, -10.0) for c in chars if c not in pieces]
    vocab += [(p, -1.0) for p in pieces]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.chat_template = SP_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id)
    return HFBackend("tiny-sp", model_obj=LlamaForCausalLM(config), tokenizer=fast)


def _joined_logprob(backend: HFBackend, chat, continuation: str) -> tuple[float, list[str]]:
    """log p(continuation) from one forward pass over the chat's text + continuation, tokenized together.

    The continuation's tokens are those of the joined text after its longest common token prefix with the
    chat's text alone. Also returns those tokens.
    """
    tok = backend.tokenizer
    text = tok.apply_chat_template(chat, tokenize=False, continue_final_message=True)
    prefix = tok(text, add_special_tokens=False)["input_ids"]
    joined = tok(text + continuation, add_special_tokens=False)["input_ids"]
    m = next((i for i, (a, b) in enumerate(zip(prefix, joined)) if a != b), min(len(prefix), len(joined)))
    with torch.no_grad():
        logp = torch.log_softmax(backend.lm(torch.tensor([joined])).logits[0].float(), -1)
    total = sum(float(logp[t - 1, joined[t]]) for t in range(m, len(joined)))
    return total, tok.convert_ids_to_tokens(joined[m:])


WORDS = ["▁user:", "▁assistant:", "▁Which", "▁is", "▁kinder?", "▁The", "▁better", "▁response", "▁("]


@pytest.mark.parametrize("reuse_prefix", [True, False])
def test_sentencepiece_option_is_scored_as_in_running_text(reuse_prefix):
    backend = _sentencepiece_backend([*WORDS, "▁A", "▁B", "A", "B"])
    backend.reuse_prefix = reuse_prefix
    tok = backend.tokenizer
    assert tok.convert_ids_to_tokens(tok("A", add_special_tokens=False)["input_ids"]) == ["▁A"]  # alone
    scores = backend.score([SP_CHAT], [["A", "B"]])[0]
    prefix = backend.render(SP_CHAT)
    with torch.no_grad():
        next_logp = torch.log_softmax(backend.lm(torch.tensor([prefix])).logits[0, -1].float(), -1)
    for letter, got in zip("AB", scores):
        want, tokens = _joined_logprob(backend, SP_CHAT, letter)
        assert tokens == [letter]  # in running text: the bare letter after "▁("
        (alone,) = tok(letter, add_special_tokens=False)["input_ids"]
        assert float(next_logp[alone]) != pytest.approx(want, abs=1e-3)  # what scoring "▁A" would read
        assert got == pytest.approx(want, abs=1e-4)


def test_sentencepiece_option_merged_across_the_boundary():
    # "▁(A" is one piece: the joined text re-tokenizes the prefix's last "▁(" into it.
    backend = _sentencepiece_backend([*WORDS, "▁(A", "▁(B", "▁A", "▁B", "A", "B"])
    scores = backend.score([SP_CHAT], [["A", "B"]])[0]
    for letter, got in zip("AB", scores):
        want, tokens = _joined_logprob(backend, SP_CHAT, letter)
        assert tokens == [f"▁({letter}"]
        assert got == pytest.approx(want, abs=1e-4)
