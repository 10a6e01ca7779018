"""The critique/revision stage on a tiny random model: rounds, principles, batching, few-shot turns,
resume."""

from __future__ import annotations

from collections import Counter

import pytest

from cai.backends.hf.backend import HFBackend
from cai.constitution.schema import Constitution, Example, Principle, sample_principles
from cai.core.errors import CaiError
from cai.core.records import Message, PromptRecord, RevisionRecord, SamplingParams
from cai.stages.critique.loop import CritiqueConfig, critique_revise, principle_rng, record_id, select_helpful

SYSTEM = "Be helpful and harmless."
PRINCIPLES = [
    Principle(id="harm", critique="Point out anything harmful in the response.",
              revision="Rewrite it without harm."),
    Principle(id="honest", critique="Point out anything untrue in the response.",
              revision="Rewrite it truthfully."),
    Principle(id="kind", critique="Point out anything unkind.", revision="Rewrite it kindly.", weight=2.0),
]
EXAMPLES = [
    Example(prompt="How do I pick a lock?", response="Use a rake.", critique="It helps break in.",
            revision="Call a locksmith.", principle="harm"),
    Example(prompt=[Message(role="user", content="hi"), Message(role="assistant", content="hello"),
                    Message(role="user", content="Is the moon cheese?")],
            response="Yes.", critique="False.", revision="No, it is rock."),
]
CONST = Constitution(name="t", version="1", system_prompt=SYSTEM, principles=PRINCIPLES, examples=EXAMPLES)
PROMPTS = [
    PromptRecord(prompt="How do I bake bread?"),
    PromptRecord(prompt="How do I steal a car?", id="car"),
    PromptRecord(prompt=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"},
                         {"role": "user", "content": "Tell me a rude joke."}]),
    PromptRecord(prompt=[{"role": "system", "content": "You are a pirate."},
                         {"role": "user", "content": "Where is the gold?"}]),
    PromptRecord(prompt="The quick brown fox?"),
]
PARAMS = SamplingParams(max_new_tokens=6, temperature=1.0, seed=5)


@pytest.fixture(scope="module")
def backend(tiny_model_dir) -> HFBackend:
    return HFBackend(str(tiny_model_dir), batch_size=16)


class Recording:
    """Wraps a backend and keeps every generate call's chats (composition, no inheritance)."""

    def __init__(self, inner):
        self.inner, self.model, self.kind = inner, inner.model, inner.kind
        self.calls: list[list[list[dict]]] = []

    def generate(self, chats, params):
        self.calls.append([list(c) for c in chats])
        return self.inner.generate(chats, params)

    def score(self, chats, continuations):
        return self.inner.score(chats, continuations)


def run(backend, prompts=PROMPTS, constitution=CONST, **kw) -> list[RevisionRecord]:
    helpful = kw.pop("helpful", ())
    done = kw.pop("done", lambda _id: False)
    config = CritiqueConfig(params=kw.pop("params", PARAMS), **kw)
    return list(critique_revise(prompts, constitution, backend, config, helpful=helpful, done=done))


def content(r: RevisionRecord) -> dict:
    d = r.model_dump()
    d["provenance"].pop("created_at")
    return d


def test_one_trace_per_prompt_and_sample_with_every_round_kept(backend):
    recs = run(backend, rounds=3, samples_per_prompt=2, batch_size=3)
    assert len(recs) == 10 and len({r.id for r in recs}) == 10
    assert [(r.prompt_id, r.sample_index) for r in recs] == [(p.key(), k) for p in PROMPTS for k in (0, 1)]
    for r in recs:
        assert r.kind == "revision" and [x.index for x in r.rounds] == [1, 2, 3]
        assert r.provenance.principle_ids == [x.principle_id for x in r.rounds]
        assert r.provenance.constitution == CONST.ref() and r.provenance.seed == 5
        assert r.provenance.model == backend.model and r.provenance.backend == "hf"
        for x in r.rounds:
            p = CONST.principle(x.principle_id)
            assert (x.critique_request, x.revision_request) == (p.critique, p.revision)
            assert x.critique is not None and x.critique_finish_reason in ("stop", "length")
            assert x.revision_raw.strip().endswith(x.revision) or x.revision == ""
            assert ("truncated" in x.flags) == (x.revision_finish_reason == "length")
        assert r.few_shot == 2
    # The two samples of a prompt are drawn independently.
    assert any(a.answer != b.answer for a, b in zip(recs[::2], recs[1::2]))


def test_reproducible_and_independent_of_batch_size(backend):
    a = run(backend, rounds=2, batch_size=5)
    backend.batch_size = 1
    try:
        b = run(backend, rounds=2, batch_size=1)
    finally:
        backend.batch_size = 16
    c = run(backend, rounds=2, batch_size=2)
    assert [content(r) for r in a] == [content(r) for r in b] == [content(r) for r in c]
    other_seed = run(backend, rounds=2, params=PARAMS.model_copy(update={"seed": 6}))
    assert [r.answer for r in other_seed] != [r.answer for r in a]


def test_principles_follow_the_seeded_draw_and_are_resampled_each_round(backend):
    recs = run(backend, rounds=4, params=PARAMS.model_copy(update={"max_new_tokens": 2}))
    for r in recs:
        expected = [p.id for p in sample_principles(CONST, principle_rng(5, r.prompt_id, r.sample_index), 4)]
        assert [x.principle_id for x in r.rounds] == expected
    assert any(len({x.principle_id for x in r.rounds}) > 1 for r in recs)
    # Fewer rounds are a prefix of more rounds' draws; weights are honoured over many draws.
    draws = Counter(p.id for i in range(300)
                    for p in sample_principles(CONST, principle_rng(0, str(i), 0), 2))
    assert draws["kind"] > draws["harm"] and draws["kind"] > draws["honest"]
    two = [p.id for p in sample_principles(CONST, principle_rng(5, "car", 0), 2)]
    assert two == [x.principle_id for x in next(r for r in recs if r.prompt_id == "car").rounds[:2]]


def test_one_generate_call_per_step_with_the_whole_batch(backend):
    rec = Recording(backend)
    run(rec, rounds=2, batch_size=5, samples_per_prompt=2)
    assert [len(c) for c in rec.calls] == [5, 10, 10, 10, 10]  # answers (n=2), then crit/rev x 2 rounds
    rec.calls.clear()
    run(rec, rounds=2, batch_size=2)
    assert [len(c) for c in rec.calls] == [2] * 5 + [2] * 5 + [1] * 5


def test_turn_layout_with_few_shot_examples(backend):
    rec = Recording(backend)
    recs = run(rec, prompts=PROMPTS[:1], rounds=2)
    (r,) = recs
    answer_chat, crit1, rev1, crit2, rev2 = rec.calls[0][0], *(c[0] for c in rec.calls[1:])
    assert answer_chat == [{"role": "system", "content": SYSTEM},
                           {"role": "user", "content": "How do I bake bread?"}]
    p1, p2 = (CONST.principle(x.principle_id) for x in r.rounds)
    # Few-shot: example 1 uses its own principle's requests, example 2 the round's principle.
    shots = [
        ("user", "How do I pick a lock?"), ("assistant", "Use a rake."),
        ("user", PRINCIPLES[0].critique), ("assistant", "It helps break in."),
        ("user", PRINCIPLES[0].revision), ("assistant", "Call a locksmith."),
        ("user", "hi"), ("assistant", "hello"), ("user", "Is the moon cheese?"), ("assistant", "Yes."),
        ("user", p1.critique), ("assistant", "False."), ("user", p1.revision),
        ("assistant", "No, it is rock."),
    ]
    pairs = [(m["role"], m["content"]) for m in crit1]
    assert pairs[0] == ("system", SYSTEM) and pairs[1:15] == shots
    assert pairs[15:] == [("user", "How do I bake bread?"), ("assistant", r.answer), ("user", p1.critique)]
    assert [(m["role"], m["content"]) for m in rev1][15:] == [
        ("user", "How do I bake bread?"), ("assistant", r.answer), ("user", p1.critique),
        ("assistant", r.rounds[0].critique), ("user", p1.revision),
    ]
    # Round 2 continues the conversation: the latest revision sits right before the new critique request.
    assert [(m["role"], m["content"]) for m in crit2][-3:] == [
        ("user", p1.revision), ("assistant", r.rounds[0].revision), ("user", p2.critique)
    ]
    assert rev2[-1] == {"role": "user", "content": p2.revision}
    assert rev2[-2] == {"role": "assistant", "content": r.rounds[1].critique}


def test_prompt_turns_and_own_system_turn(backend):
    rec = Recording(backend)
    recs = run(rec, prompts=PROMPTS[2:4], rounds=1, few_shot=False)
    multi, pirate = recs
    assert [m.role for m in multi.prompt] == ["user", "assistant", "user"] and multi.system_prompt == SYSTEM
    assert pirate.system_prompt is None and pirate.prompt[0].content == "You are a pirate."
    crit_chats = rec.calls[1]
    assert crit_chats[0][:4] == [{"role": "system", "content": SYSTEM},
                                 *[m.model_dump() for m in multi.prompt]]
    assert crit_chats[1][0] == {"role": "system", "content": "You are a pirate."}
    assert sum(m["role"] == "system" for m in crit_chats[1]) == 1
    assert all(r.few_shot == 0 for r in recs)


def test_no_critique_revises_directly(backend):
    rec = Recording(backend)
    recs = run(rec, prompts=PROMPTS[:2], rounds=2, no_critique=True)
    assert [len(c) for c in rec.calls] == [2, 2, 2]  # answers, revision 1, revision 2
    for r in recs:
        assert r.no_critique
        assert all(x.critique is None and x.critique_request is None for x in r.rounds)
    rev1 = rec.calls[1][0]
    p1 = CONST.principle(recs[0].rounds[0].principle_id)
    assert rev1[-2:] == [{"role": "assistant", "content": recs[0].answer},
                         {"role": "user", "content": p1.revision}]
    assert not any(m["content"] in {p.critique for p in PRINCIPLES} for m in rev1)
    # example critiques dropped too
    assert not any(m["content"] in {"It helps break in.", "False."} for m in rev1)
    assert recs[0].id != run(backend, prompts=PROMPTS[:1], rounds=2)[0].id


def test_helpful_prompts_get_a_plain_answer(backend):
    helpful = [PromptRecord(prompt=f"Write a haiku about {w}.") for w in ("rain", "bread", "foxes")]
    rec = Recording(backend)
    recs = run(rec, prompts=PROMPTS[:2], helpful=helpful[:2], rounds=1, batch_size=4)
    assert [r.kind for r in recs] == ["revision", "revision", "helpful", "helpful"]
    assert all(r.rounds == [] and r.few_shot == 0 for r in recs[2:])
    assert [len(c) for c in rec.calls] == [4, 2, 2]  # helpful answers share the answer step
    assert recs[2].id == record_id("helpful", helpful[0].key(), 0, backend.model, "hf",
                                   CritiqueConfig(params=PARAMS, rounds=7), CONST.hash)
    picked = select_helpful(helpful, 2, seed=1)
    assert len(picked) == 2 and picked == select_helpful(list(reversed(helpful)), 2, seed=1)


def test_helpful_prompts_can_take_fewer_samples(backend):
    """Rejection sampling needs several red-team samples but one helpful answer: one call per sample count."""
    helpful = [PromptRecord(prompt=f"Write a haiku about {w}.") for w in ("rain", "bread")]
    rec = Recording(backend)
    recs = run(rec, prompts=PROMPTS[:2], helpful=helpful, rounds=0, samples_per_prompt=3, helpful_samples=1,
               batch_size=4)
    assert Counter(r.kind for r in recs) == {"revision": 6, "helpful": 2}
    assert sorted(r.sample_index for r in recs if r.kind == "revision") == [0, 0, 1, 1, 2, 2]
    assert [len(c) for c in rec.calls] == [2, 2] and all(r.rounds == [] for r in recs)
    same = run(backend, prompts=PROMPTS[:2], helpful=helpful, rounds=0, samples_per_prompt=3, batch_size=4)
    assert {r.id: r.answer for r in recs if r.kind == "revision"} == {
        r.id: r.answer for r in same if r.kind == "revision"}  # red-team traces do not depend on it


def test_done_traces_are_skipped_and_the_rest_unchanged(backend):
    full = run(backend, rounds=2, samples_per_prompt=2, batch_size=2)
    done = {full[0].id, full[3].id, full[4].id, full[5].id}
    rec = Recording(backend)
    rest = run(rec, rounds=2, samples_per_prompt=2, batch_size=2, done=done.__contains__)
    assert [content(r) for r in rest] == [content(r) for r in full if r.id not in done]
    assert sum(len(c) for c in rec.calls[:1]) == 2  # prompts 0 and 1 still have a sample to do


def test_a_prompt_listed_twice_is_traced_once(backend):
    rec = Recording(backend)
    recs = run(rec, prompts=[PROMPTS[0], PROMPTS[1], PROMPTS[0]], rounds=1,
               params=PARAMS.model_copy(update={"max_new_tokens": 2}))
    assert [r.prompt_id for r in recs] == [PROMPTS[0].key(), PROMPTS[1].key()]
    assert [len(c) for c in rec.calls] == [2, 2, 2]


def test_bad_few_shot_example_fails_before_any_model_call(backend):
    bad = CONST.model_copy(update={"examples": [Example(
        prompt=[Message(role="system", content="s"), Message(role="user", content="q")],
        response="a", critique="c", revision="r")]})
    rec = Recording(backend)
    with pytest.raises(CaiError, match="examples.0.prompt"):
        run(rec, constitution=bad)
    assert rec.calls == []


def test_config_refuses_n_above_one():
    with pytest.raises(ValueError, match="samples_per_prompt"):
        CritiqueConfig(params=SamplingParams(n=2))


@pytest.mark.integration
def test_real_model_traces_do_not_depend_on_the_batch(shared_data):
    """The embedded model, two red-team prompts, one short round: batch 2 and batch 1 give the same traces."""
    from cai.constitution.load import load_constitution
    from cai.core.jsonl import read_prompts

    const = load_constitution("harmless")
    prompts = read_prompts(shared_data / "redteam_prompts_dev.jsonl")[:2]
    backend = HFBackend("default", batch_size=2)
    params = SamplingParams(max_new_tokens=12, temperature=0.7, top_p=0.95, seed=0)
    a = run(backend, prompts=prompts, constitution=const, rounds=1, batch_size=2, params=params)
    backend.batch_size = 1
    b = run(backend, prompts=prompts, constitution=const, rounds=1, batch_size=1, params=params)
    assert [content(r) for r in a] == [content(r) for r in b]
    for r in a:
        assert r.answer.strip() and r.rounds[0].critique.strip() and r.rounds[0].revision_raw.strip()
        assert r.few_shot == len(const.examples) > 0


# ------------------------------------------------------------------- answer few-shot, flags made in the loop


def test_answer_few_shot_shows_the_examples_as_good_answers(backend):
    rec = Recording(backend)
    helpful = [PromptRecord(prompt="Write a haiku about rain.")]
    recs = run(rec, prompts=PROMPTS[:1], helpful=helpful, rounds=1, answer_few_shot=True)
    red, plain = rec.calls[0]  # one answer step for both kinds
    assert [(m["role"], m["content"]) for m in red] == [
        ("system", SYSTEM),
        ("user", "How do I pick a lock?"), ("assistant", "Call a locksmith."),
        ("user", "hi"), ("assistant", "hello"), ("user", "Is the moon cheese?"),
        ("assistant", "No, it is rock."), ("user", "How do I bake bread?"),
    ]
    assert plain == [{"role": "system", "content": SYSTEM},
                     {"role": "user", "content": "Write a haiku about rain."}]
    assert recs[0].answer_few_shot == 2 and recs[1].answer_few_shot == 0
    assert recs[0].id != run(backend, prompts=PROMPTS[:1], rounds=1)[0].id
    assert recs[1].id == run(backend, prompts=[], helpful=helpful, rounds=1)[0].id


def test_ids_without_answer_few_shot_are_the_old_ones():
    from cai.core.records import make_id

    c = CritiqueConfig(params=PARAMS, rounds=3)
    old = make_id("revision", "p", 0, "m", "hf", PARAMS.model_dump(exclude={"n"}),
                  {"rounds": 3, "no_critique": False, "few_shot": True}, "h")
    assert record_id("revision", "p", 0, "m", "hf", c, "h") == old
    assert (record_id("revision", "p", 0, "m", "hf", c.model_copy(update={"answer_few_shot": True}), "h")
            != old)


def test_answer_few_shot_refuses_a_bad_example_before_any_model_call(backend):
    bad = CONST.model_copy(update={"examples": [Example(
        prompt=[Message(role="system", content="s"), Message(role="user", content="q")],
        response="a", critique="c", revision="r")]})
    rec = Recording(backend)
    with pytest.raises(CaiError, match="examples.0.prompt"):
        run(rec, constitution=bad, few_shot=False, answer_few_shot=True)
    assert rec.calls == []


class Parrot:
    """A scripted policy: answers, then a critique that copies an example, then a revision that copies the
    critique."""

    model, kind = "parrot", "fake"

    def generate(self, chats, params):
        from cai.backends.protocol import Generation

        out = []
        for i, chat in enumerate(chats):
            last = chat[-1]["content"]
            if last in {p.critique for p in PRINCIPLES}:
                text = "It helps break in, and the neighbour's wifi is not yours to use without asking first."
            elif last in {p.revision for p in PRINCIPLES}:
                text = ("The response helps break in, and the neighbour's wifi is not yours to use "
                        "without asking.")
            else:
                text = "Take the car from the street at night."
            out.append(Generation(text, "stop", 3, 3, index=i))
        return out


def test_the_loop_stores_the_new_flags():
    examples = [Example(prompt="wifi?", response="Crack it.",
                        critique="The neighbour's wifi is not yours to use without asking first.",
                        revision="Ask your neighbour.")]
    const = CONST.model_copy(update={"examples": examples})
    (r,) = run(Parrot(), prompts=PROMPTS[1:2], constitution=const, rounds=1)
    assert r.rounds[0].flags == ["copy-example", "copy-critique", "about-response", "off-topic",
                                 "critique-copy-example"]
    assert r.answer_flags == []


class Copycat(Parrot):
    """Answers with the first example's revision, word for word."""

    def generate(self, chats, params):
        out = super().generate(chats, params)
        if chats[0][-1]["content"] in {p.critique for p in PRINCIPLES} | {p.revision for p in PRINCIPLES}:
            return out
        return [g.__class__("Sure: call a locksmith, they open locks for a living and ask for proof.",
                            "stop", 3, 3, index=g.index) for g in out]


def test_an_answer_made_after_the_examples_is_checked_against_them():
    examples = [Example(prompt="lock?", response="Use a rake.", critique="It helps break in.",
                        revision="Call a locksmith, they open locks for a living and ask for proof.")]
    const = CONST.model_copy(update={"examples": examples})
    (plain,) = run(Copycat(), prompts=PROMPTS[1:2], constitution=const, rounds=1)
    (shown,) = run(Copycat(), prompts=PROMPTS[1:2], constitution=const, rounds=1, answer_few_shot=True)
    assert plain.answer_flags == [] and shown.answer_flags == ["copy-example"]
