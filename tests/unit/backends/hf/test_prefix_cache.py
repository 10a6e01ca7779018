"""The hf backend's speed paths are exact: shared-prefix reuse, preallocated KV cache, fast top-p."""

from __future__ import annotations

import pytest
import torch

from cai.backends.hf.backend import HFBackend
from cai.backends.hf.cache import PreallocatedLayer, cache_kwargs, can_preallocate, make_cache
from cai.backends.hf.decode import _top_p_sets
from cai.backends.hf.prefix_cache import PrefixStore, batch_shared_len
from cai.core.records import SamplingParams

SYSTEM = {"role": "system",
          "content": "Please choose the response that is more helpful, honest and harmless. " * 3}
QUESTIONS = ["hi", "How do I bake bread?", "The quick brown fox", "I cannot help with that",
             "(A) (B)", "fox " * 9]
CHATS = [[SYSTEM, {"role": "user", "content": q}] for q in QUESTIONS]
CONTS = [["(A)", "(B)"], ["A"], ["yes", "no", "maybe so"], ["A", "B"], [" B", "(A) is better"], ["x"]]


@pytest.fixture(scope="module")
def backend(tiny_model_dir) -> HFBackend:
    return HFBackend(str(tiny_model_dir), batch_size=4)


def _naive(backend: HFBackend) -> HFBackend:
    return HFBackend(backend.model, batch_size=3, reuse_prefix=False, model_obj=backend.lm,
                     tokenizer=backend.tokenizer)


def _reference_greedy(backend: HFBackend, chat, max_new_tokens: int) -> str:
    ids = torch.tensor([backend.render(chat)])
    out = backend.lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                              do_sample=False)
    return backend.tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True)


def test_the_chats_share_a_long_prefix(backend):
    assert can_preallocate(backend.lm)
    assert batch_shared_len([backend.render(c) for c in CHATS]) >= 30


def test_prefix_reused_scores_equal_naive_recompute(backend):
    backend._store = None
    fast = backend.score(CHATS, CONTS)
    store = backend.prefix_store()
    first = store.computed_tokens
    assert first >= 30  # the shared prefix was computed once...
    again = backend.score(CHATS[::-1], CONTS[::-1])
    assert store.computed_tokens == first  # ...and reused by the later batches and the next call
    slow = _naive(backend).score(CHATS, CONTS)
    for a, b, c in zip(fast, slow, again[::-1]):
        assert a == pytest.approx(b, abs=1e-4)
        assert a == pytest.approx(c, abs=1e-4)


def test_stored_prefix_is_dropped_when_the_weights_change(backend, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    b = HFBackend(backend.model, batch_size=4, model_obj=lm, tokenizer=backend.tokenizer)
    before = b.score(CHATS, CONTS)
    with torch.no_grad():
        torch.manual_seed(1)  # an in-place update, like an optimizer step
        lm.model.layers[0].self_attn.v_proj.weight.add_(torch.randn_like(lm.model.layers[0].self_attn.v_proj.weight))
    after = b.score(CHATS, CONTS)
    expected = _naive(b).score(CHATS, CONTS)
    assert max(abs(x - y) for a, b_ in zip(after, before) for x, y in zip(a, b_)) > 1e-2
    for a, e in zip(after, expected):
        assert a == pytest.approx(e, abs=1e-4)


def test_greedy_with_shared_prefix_matches_model_generate(backend):
    gens = backend.generate(CHATS, SamplingParams(max_new_tokens=12))
    for chat, gen in zip(CHATS, gens):
        assert gen.text == _reference_greedy(backend, chat, 12)
        assert gen.prompt_tokens == len(backend.render(chat))


def test_greedy_is_the_same_with_every_lever_off(backend):
    params = SamplingParams(max_new_tokens=12)
    fast = backend.generate(CHATS, params)
    backend.preallocate, backend.reuse_prefix = False, False
    try:
        slow = backend.generate(CHATS, params)
    finally:
        backend.preallocate, backend.reuse_prefix = True, True
    assert [g.text for g in fast] == [g.text for g in slow]


def test_seeded_sampling_does_not_depend_on_the_batch(backend):
    params = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=5, n=2)
    together = backend.generate(CHATS, params)
    backend.batch_size = 1
    try:
        alone = backend.generate(CHATS[::-1], params)
    finally:
        backend.batch_size = 4
    n = len(CHATS)
    by_key = {(n - 1 - g.index, g.sample): g.text for g in alone}
    assert all(by_key[(g.index, g.sample)] == g.text for g in together)


def test_preallocated_layer_grows_selects_and_repeats_rows():
    layer = PreallocatedLayer(rows=2, capacity=3)
    k = torch.arange(2 * 1 * 2 * 4, dtype=torch.float).reshape(2, 1, 2, 4)  # [B, H, T, D]
    keys, _ = layer.update(k, k + 100)
    assert torch.equal(keys, k)
    k2 = -torch.ones(2, 1, 3, 4)
    keys, values = layer.update(k2, k2)  # 5 > capacity 3: the buffer grows, contents kept
    assert layer.get_seq_length() == 5 and torch.equal(keys, torch.cat([k, k2], dim=2))
    assert torch.equal(values[:, :, :2], k + 100)
    layer.batch_select_indices(torch.tensor([1, 1, 0]))  # more rows than the buffer had: repeat rows
    assert layer.keys.shape[0] == 3
    assert torch.equal(layer.keys[0], layer.keys[1]) and torch.equal(layer.keys[2, :, :2], k[0])
    layer.batch_select_indices(torch.tensor([2]))
    assert torch.equal(layer.keys[0, :, :2], k[0]) and layer.keys.shape[:3] == (1, 1, 5)


def test_fill_copies_one_sequence_into_every_row():
    layer = PreallocatedLayer(rows=1, capacity=2)
    k = torch.randn(1, 2, 4, 8)
    layer.fill(k, k * 2, rows=3)
    assert layer.keys.shape == (3, 2, 4, 8) and torch.equal(layer.keys[2], k[0])
    assert torch.equal(layer.values[1], 2 * k[0])


def test_preallocated_cache_gives_the_same_logits_as_dynamic(backend):
    from transformers import DynamicCache

    n = min(len(backend.render(c)) for c in CHATS[1:3])
    ids = torch.tensor([backend.render(CHATS[1])[:n], backend.render(CHATS[2])[:n]])
    outs = []
    with torch.inference_mode():
        for cache in (DynamicCache(config=backend.lm.config), make_cache(backend.lm, 2, 4)):
            logits = [backend.lm(input_ids=ids, **cache_kwargs(backend.lm, cache)).logits[:, -1]]
            for t in (5, 6, 7):
                step = torch.full((2, 1), t)
                logits.append(backend.lm(input_ids=step, **cache_kwargs(backend.lm, cache)).logits[:, -1])
            outs.append(torch.stack(logits))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_prefix_store_reuses_slices_and_extends(backend):
    a = backend.render(CHATS[0])[:40]
    b = a[:30] + backend.tokenizer("fox " * 12, add_special_tokens=False)["input_ids"][:10]
    assert b[30:] != a[30:]
    store = PrefixStore(min_tokens=8)
    with torch.inference_mode():
        store.get(backend.lm, a)
        assert store.computed_tokens == 40
        shorter = store.get(backend.lm, a[:30])  # a prefix of what is stored: sliced, nothing computed
        assert store.computed_tokens == 40 and shorter[0][0].shape[-2] == 30
        extended = store.get(backend.lm, b)  # shares 30 tokens: only the other 10 are computed
        assert store.computed_tokens == 50
        fresh = PrefixStore(min_tokens=8).get(backend.lm, b)
    for (k1, v1), (k2, v2) in zip(extended, fresh):
        torch.testing.assert_close(k1, k2, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(v1, v2, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.99])
def test_fast_top_p_keeps_the_same_set_as_a_full_sort(top_p):
    torch.manual_seed(0)
    logits = torch.randn(6, 3000) * torch.tensor([1.0, 2.0, 4.0, 8.0, 0.5, 3.0])[:, None]
    probs = torch.softmax(logits, -1)
    sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
    drop = sorted_p.cumsum(-1) - sorted_p > top_p
    expected = torch.zeros_like(probs).scatter(-1, sorted_i, sorted_p.masked_fill(drop, 0.0))
    fast = torch.zeros_like(probs)
    for r, (w, ids) in enumerate(_top_p_sets(probs, top_p)):  # each row's set, over the vocabulary
        fast[r, ids] = w
    torch.testing.assert_close(fast, expected, atol=0, rtol=0)


def test_scores_do_not_depend_on_how_chats_are_batched(backend):
    wide = backend.score(CHATS, CONTS)  # default: length buckets with at most 10% padding
    backend.max_padding, backend.batch_size = 1.0, 6  # one padded batch of all six
    try:
        one_batch = backend.score(CHATS, CONTS)
    finally:
        backend.max_padding, backend.batch_size = None, 4
    for a, b in zip(wide, one_batch):
        assert a == pytest.approx(b, abs=1e-4)
