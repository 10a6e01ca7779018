"""The best-of-n over-optimization study: the estimator against brute force, the KL against a numeric KL,
a planted Goodhart curve found, resumability, and the plot with a tiny random reward model."""

from __future__ import annotations

import base64
import itertools
import json
import math
import random

import pytest

from cai.backends.protocol import Generation, request_seed
from cai.core.errors import CaiError
from cai.core.records import PromptRecord
from cai.eval.answer_scorers import Scorer, pm_scorer, reward_scorer
from cai.eval.best_of_n import expected_best_of_n, kl_bon, parting_n
from cai.eval.overoptimization import (
    CheckpointPoint,
    OverOptimization,
    best_of_n_study,
    checkpoints_from_curve,
    load_checkpoints,
)
from cai.eval.overoptimization_report import (
    overoptimization_html,
    overoptimization_markdown,
    overoptimization_text,
    plot_overoptimization,
)

WORDS = ["bread", "flour", "water", "salt", "yeast", "knead", "bake", "oven", "rise", "dough"]


class SeededPolicy:
    """Answers of 1-12 words drawn from each request's own seed (as the hf backend seeds each request)."""

    kind = "hf"

    def __init__(self, name: str = "policy", fail_after_calls: int | None = None):
        self.model = name
        self.calls = 0
        self.fail_after_calls = fail_after_calls

    def generate(self, chats, params):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise KeyboardInterrupt
        self.calls += 1
        out = []
        for i, chat in enumerate(chats):
            for s in range(params.n):
                seed = request_seed(params.seed, chat, s)
                rng = random.Random(seed)
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
                out.append(Generation(text=text, finish_reason="stop", prompt_tokens=3,
                                      completion_tokens=len(text.split()), index=i, sample=s, seed=seed))
        return out

    def score(self, chats, continuations):
        raise AssertionError("not needed")


def words(texts):
    return [float(len(t.split())) for t in texts]


def counting(name, fn):
    """A scorer from ``fn(texts)`` that counts the answers it scored."""
    seen = []

    def score(recs):
        seen.extend(r.id for r in recs)
        return fn([r.completion[0].content for r in recs])

    return Scorer(name, score, name), seen


PROMPTS = [PromptRecord(prompt=f"How do I bake bread, version {i}?") for i in range(12)]


# ------------------------------------------------------------------------------------------ the formulas
def brute_force(proxy, gold, n):
    """Mean over every n-subset of the (proxy, gold) of its proxy-argmax (first of ties, in index order)."""
    picks = [max(sub, key=lambda i: proxy[i]) for sub in itertools.combinations(range(len(proxy)), n)]
    return sum(proxy[i] for i in picks) / len(picks), sum(gold[i] for i in picks) / len(picks)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expected_best_of_n_matches_brute_force_over_subsets(seed):
    rng = random.Random(seed)
    N = 9
    proxy = [rng.choice([0.0, 0.5, 1.0, 1.5, rng.random()]) for _ in range(N)]  # ties on purpose
    gold = [rng.gauss(0, 1) for _ in range(N)]
    for n in range(1, N + 1):
        got, want = expected_best_of_n(proxy, gold, n), brute_force(proxy, gold, n)
        assert got == pytest.approx(want, abs=1e-12), (n, got, want)


def test_kl_bon_matches_the_numeric_kl_of_best_of_n_on_many_outcomes():
    """Best-of-n of M equally likely outcomes with distinct proxy scores: the i-th lowest is kept with
    probability (i^n - (i-1)^n) / M^n; its KL from uniform tends to log n - (n-1)/n as M grows."""
    M = 20000
    for n in (1, 2, 4, 8, 16):
        kl = 0.0
        for i in range(1, M + 1):
            p = (i / M) ** n - ((i - 1) / M) ** n
            if p > 0:
                kl += p * math.log(p * M)
        assert kl == pytest.approx(kl_bon(n), abs=2e-3), n
    with pytest.raises(ValueError):
        kl_bon(0)


def test_parting_point_is_the_gold_peak_only_when_proxy_still_rises():
    ns = [1, 2, 4, 8, 16]
    assert parting_n(ns, [0, 1, 2, 3, 4], [0, 2, 3, 1, 0]) == 4
    assert parting_n(ns, [0, 1, 2, 2, 2], [0, 2, 3, 1, 0]) is None  # proxy flat after the peak
    assert parting_n(ns, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]) is None


# ------------------------------------------------------------------------------------------ the study
def test_study_finds_a_planted_goodhart_curve_and_resumes(tmp_path):
    """Proxy pays for length; gold likes 9-word answers (the policy's mean is 6.5): best-of-n picks longer
    answers, so gold rises, peaks (at n=4: about 10 words) and falls while the proxy keeps rising."""
    policy = SeededPolicy()
    built = []
    proxy, proxy_seen = counting("len", words)
    gold, gold_seen = counting("peak9", lambda texts: [-abs(w - 9.0) for w in words(texts)])

    def make():
        built.append(1)
        return policy

    r = best_of_n_study(PROMPTS, make, proxy, gold, tmp_path / "bon", model="policy", n_boot=300, seed=0)
    assert [p.n for p in r.points] == [1, 2, 4, 8, 16] and r.prompts == 12
    assert [round(p.kl, 4) for p in r.points] == [0.0, 0.1931, 0.6363, 1.2044, 1.8351]
    proxies = [p.proxy for p in r.points]
    assert proxies == sorted(proxies) and proxies[-1] > proxies[0] + 3
    golds = [p.gold for p in r.points]
    assert golds[0] < golds[1] < golds[2] > golds[3] > golds[4]
    assert r.parting.parted_at == 4 and r.parting.from_n == 4 and r.parting.to_n == 16
    assert r.parting.gold_change_hi < 0 < r.parting.proxy_change_lo  # detectable
    assert r.parting.verdict.startswith(f"parted at n={r.parting.parted_at} (KL")
    for p in r.points:
        assert p.proxy_lo <= p.proxy <= p.proxy_hi and p.gold_lo <= p.gold <= p.gold_hi
    lines = (tmp_path / "bon" / "answers.jsonl").read_text().splitlines()
    assert len(lines) == 12 * 16 and len(proxy_seen) == len(gold_seen) == 12 * 16
    # a rerun loads nothing and scores nothing, and gives the same figures
    again = best_of_n_study(PROMPTS, make, proxy, gold, tmp_path / "bon", model="policy", n_boot=300, seed=0)
    assert built == [1] and len(proxy_seen) == 12 * 16
    assert again.model_dump(exclude={"files"}) == r.model_dump(exclude={"files"})


def test_study_says_did_not_part_when_gold_follows_the_proxy(tmp_path):
    proxy = reward_scorer("len", lambda chats, texts: words(texts))
    gold = reward_scorer("len-too", lambda chats, texts: [0.5 * w for w in words(texts)])
    r = best_of_n_study(PROMPTS[:6], SeededPolicy, proxy, gold, tmp_path, model="policy", ns=[1, 2, 4, 8, 16],
                        n_boot=200)
    assert r.parting.parted_at is None and r.parting.share == 0.0
    assert r.parting.verdict.startswith("did not part within n<=16")
    assert "did not part within n<=16" in overoptimization_text(r)


def test_interrupted_sampling_resumes_to_the_same_samples(tmp_path):
    proxy = reward_scorer("len", lambda chats, texts: words(texts))
    gold = reward_scorer("g", lambda chats, texts: [-w for w in words(texts)])
    whole = best_of_n_study(PROMPTS[:8], SeededPolicy, proxy, gold, tmp_path / "a", model="policy",
                            ns=[1, 4], n_boot=50, prompts_per_call=2)
    with pytest.raises(KeyboardInterrupt):
        best_of_n_study(PROMPTS[:8], lambda: SeededPolicy(fail_after_calls=2), proxy, gold, tmp_path / "b",
                        model="policy", ns=[1, 4], n_boot=50, prompts_per_call=2)
    kept = (tmp_path / "b" / "answers.jsonl").read_text().splitlines()
    assert len(kept) == 2 * 2 * 4  # two calls of two prompts, four samples each
    resumed = best_of_n_study(PROMPTS[:8], SeededPolicy, proxy, gold, tmp_path / "b", model="policy",
                              ns=[1, 4], n_boot=50, prompts_per_call=2)
    assert resumed.model_dump(exclude={"files"}) == whole.model_dump(exclude={"files"})


def test_failed_gold_scores_drop_their_prompt_and_bad_settings_are_refused(tmp_path):
    proxy = reward_scorer("len", lambda chats, texts: words(texts))
    flaky = Scorer("flaky", lambda recs: [None if "2?" in r.prompt[-1].content else 1.0 for r in recs])
    r = best_of_n_study(PROMPTS[:4], SeededPolicy, proxy, flaky, tmp_path, model="policy", ns=[1, 2],
                        n_boot=20)
    assert (r.prompts, r.dropped_prompts) == (3, 1)
    with pytest.raises(CaiError, match="temperature"):
        best_of_n_study(PROMPTS, SeededPolicy, proxy, proxy, tmp_path, model="p", temperature=0.0)
    with pytest.raises(CaiError, match="n=65"):
        best_of_n_study(PROMPTS, SeededPolicy, proxy, proxy, tmp_path, model="p", ns=[1, 65])


# ------------------------------------------------------------------------------------------ checkpoints
def test_checkpoints_load_and_a_bad_line_names_file_line_and_field(tmp_path):
    good = tmp_path / "ck.jsonl"
    first = {"name": "dpo-100", "step": 100, "kl": 0.3, "proxy": 1.2, "gold": 0.7}
    good.write_text(json.dumps(first) + "\n\n" + json.dumps({"kl": 0.9, "proxy": 2.0}) + "\n")
    cps = load_checkpoints(good)
    assert [(c.name, c.kl, c.gold) for c in cps] == [("dpo-100", 0.3, 0.7), ("line 3", 0.9, None)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"kl": 0.1}) + "\n" + json.dumps({"kl": "lots", "proxy": 1}) + "\n")
    with pytest.raises(CaiError, match=r"bad\.jsonl:2: kl: "):
        load_checkpoints(bad)
    bad.write_text("[1, 2]\n")
    with pytest.raises(CaiError, match=r"bad\.jsonl:1: not a JSON object"):
        load_checkpoints(bad)
    rows = [{"step": s, "kl": s / 100, "reward": s / 10} for s in range(1, 61)]
    assert len(checkpoints_from_curve("ppo", rows, most=20)) == 20


# ------------------------------------------------------------------------------------------ tiny model
@pytest.fixture(scope="module")
def two_tiny_rms(tmp_path_factory):
    from tests.helpers.tiny import build_tiny_rm

    root = tmp_path_factory.mktemp("rms")
    return build_tiny_rm(root / "proxy", seed=1), build_tiny_rm(root / "gold", seed=2)


def test_study_runs_with_tiny_random_reward_models_and_draws_its_plot(two_tiny_rms, tmp_path):
    """A random proxy and an independent random gold, n up to 16 on CPU: the proxy rises by construction
    (best-of-n picks its favourites); the gold has no reason to follow it."""
    proxy_dir, gold_dir = two_tiny_rms
    proxy, gold = pm_scorer(proxy_dir, batch_size=16), pm_scorer(gold_dir, batch_size=16)
    cps = [CheckpointPoint(name="ppo-50", kl=0.5, proxy=0.0, gold=0.0), CheckpointPoint(name="dpo", kl=1.1)]
    r = best_of_n_study(PROMPTS[:4], SeededPolicy, proxy, gold, tmp_path, model="policy", n_boot=200,
                        checkpoints=cps)
    proxies = [p.proxy for p in r.points]
    assert proxies == sorted(proxies) and proxies[-1] > proxies[0]
    assert r.proxy.startswith("preference model") and r.proxy_sd > 0 and r.gold_sd > 0
    png = base64.b64decode(plot_overoptimization(r))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    md = overoptimization_markdown(r)
    assert "| 16 | 1.835 |" in md and "| ppo-50 | 0.500 (measured) | 0.000 | 0.000 |" in md
    assert "**Curves:**" in md and "| dpo | 1.100 (measured) | – | – |" in md
    page = overoptimization_html(r)
    assert 'id="overoptimization-plot"' in page and "data:image/png;base64," in page
    assert OverOptimization.model_validate_json(r.model_dump_json()) == r  # eval.json round trip
