"""Reward over-optimization (Goodhart; Gao et al. 2022): best-of-n against the preference model, seen by an
independent score.

For each prompt the policy samples ``N = max(ns)`` answers once (seeded, temperature
> 0); each answer is scored by the **proxy** (the preference model a policy would be
optimised against) and by an independent **gold** score (the eval judge, or a second
preference model trained on other data). For every ``n`` in ``ns`` the expected proxy
and gold score of the proxy's pick among ``n`` answers is computed exactly over all
``n``-subsets of the ``N`` (:func:`cai.eval.best_of_n.expected_best_of_n`), averaged
over prompts, with percentile intervals from a seeded bootstrap over prompts, and
placed at the analytic KL of best-of-n, ``log n - (n - 1) / n``. Checkpoints along
training (PPO/DPO, with measured KL) are ``(kl, proxy, gold)`` points on the same
axes. The study says where the curves part: the n after which the gold score stops
rising while the proxy keeps rising (:func:`cai.eval.best_of_n.parting_n`), or "did
not part within n<=N".

Files (under the study's folder, resumable: a rerun samples and scores only what is missing)::

    answers.jsonl   CompletionRecord per sample (N per prompt; ids as `cai generate` with n=N)
    scores.jsonl    ScoreLine per (scorer, answer): the proxy and gold values

The report section is :mod:`cai.eval.overoptimization_report`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cai.core.errors import CaiError
from cai.eval.answer_scorers import Scorer, score_samples

log = logging.getLogger(__name__)

DEFAULT_NS = (1, 2, 4, 8, 16)
N_BOOT = 1000


# ------------------------------------------------------------------------------------------ results
class BonPoint(BaseModel):
    """The mean expected best-of-n proxy and gold score at one n, with 95% bootstrap intervals (prompts)."""

    model_config = ConfigDict(extra="forbid")
    n: int
    kl: float  # analytic KL of best-of-n, nats
    proxy: float
    proxy_lo: float
    proxy_hi: float
    gold: float
    gold_lo: float
    gold_hi: float


class CheckpointPoint(BaseModel):
    """A trained checkpoint on the same axes: its measured KL and its mean proxy and gold scores."""

    model_config = ConfigDict(extra="forbid")
    name: str = "checkpoint"
    kl: float
    proxy: float | None = None
    gold: float | None = None
    step: int | None = None


class Parting(BaseModel):
    """Where the curves part, the changes after that point (95% bootstrap intervals), and the verdict."""

    model_config = ConfigDict(extra="forbid")
    parted_at: int | None  # the n after which gold stops rising while proxy rises; None: did not part
    kl: float | None  # KL of best-of-parted_at
    from_n: int  # changes are from here (parted_at, else the first n) ...
    to_n: int  # ... to the last n
    gold_change: float
    gold_change_lo: float
    gold_change_hi: float
    proxy_change: float
    proxy_change_lo: float
    proxy_change_hi: float
    share: float  # share of bootstrap resamples in which the curves part
    at_lo: int | None  # 95% interval of the parting n over resamples (None: "did not part")
    at_hi: int | None
    verdict: str


class OverOptimization(BaseModel):
    """The study's figures: what ``eval.json`` keeps under ``overoptimization``."""

    model_config = ConfigDict(extra="forbid")
    policy: str
    proxy: str
    gold: str
    ns: list[int]
    temperature: float
    max_new_tokens: int
    seed: int
    n_boot: int
    prompts: int  # prompts in the curves
    dropped_prompts: int = 0  # prompts left out: a sample the gold (or proxy) scorer failed on
    proxy_sd: float | None = None  # spread of each score over every sample (its scale)
    gold_sd: float | None = None
    points: list[BonPoint] = Field(default_factory=list)
    checkpoints: list[CheckpointPoint] = Field(default_factory=list)
    parting: Parting | None = None
    files: dict[str, str] = Field(default_factory=dict)


# ------------------------------------------------------------------------------------------ samples
def sample_answers(prompts: Sequence[Any], path: Path, model: str, kind: str, backend: Callable[[], Any],
                   params: Any, *, system_prompt: str | None = None,
                   prompts_per_call: int = 4) -> dict[str, list[Any]]:
    """``params.n`` sampled answers per prompt (prompt key -> records in sample order), only missing ones
    made.

    Appended to ``path`` as they come, keyed like ``cai generate``'s samples
    (:func:`cai.stages.generate.completion_id`); each request's seed comes from the base
    seed, the chat and the sample index, so a resumed run draws the same samples.
    """
    from cai.core.jsonl import read_records
    from cai.core.records import CompletionRecord
    from cai.core.resume import fill_jsonl
    from cai.stages.generate import completion_id, generate_completions

    unique = {p.key(): p for p in prompts}
    ids = {k: [completion_id(k, model, kind, params, system_prompt, s) for s in range(params.n)]
           for k in unique}

    def produce(be: Any, done: Callable[[str], bool], bar: Any) -> Iterator[Any]:
        todo = [p for k, p in unique.items() if not all(done(i) for i in ids[k])]
        log.info("%s: sampling %d answer(s) for each of %d prompt(s)", model, params.n, len(todo))
        return generate_completions(todo, be, params, system_prompt=system_prompt, done=done,
                                    batch_size=prompts_per_call)

    path.parent.mkdir(parents=True, exist_ok=True)
    fill_jsonl(path, {i for v in ids.values() for i in v}, backend, produce, what="sample",
               desc=f"best-of-n samples {model}")
    got = {r.id: r for r in read_records(path, CompletionRecord)}
    return {k: [got[i] for i in v] for k, v in ids.items()}


# ------------------------------------------------------------------------------------------ figures
def check_ns(ns: Sequence[int]) -> list[int]:
    """The n ladder, sorted; each n >= 1 and at most 64 (the most samples one request draws).

    >>> check_ns([4, 1, 2, 2])
    [1, 2, 4]
    >>> check_ns([0, 2])
    Traceback (most recent call last):
    cai.core.errors.CaiError: best-of-n: n=0 is not between 1 and 64 (fix: give n values like 1,2,4,8,16)
    """
    out = sorted({int(n) for n in ns})
    bad = [n for n in out if not 1 <= n <= 64]
    if not out or bad:
        raise CaiError(f"best-of-n: n={bad[0] if bad else 'none'} is not between 1 and 64",
                       hint="give n values like 1,2,4,8,16")
    return out


def _sd(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def figures(samples: Sequence[tuple[Sequence[float], Sequence[float]]], ns: Sequence[int], *,
            n_boot: int = N_BOOT, seed: int = 0) -> tuple[list[BonPoint], Parting]:
    """The curves (mean over prompts, bootstrap intervals) and where they part, from per-prompt scores."""
    from cai.eval.best_of_n import (
        bootstrap_prompts,
        kl_bon,
        parted_interval,
        parting_n,
        percentile_interval,
        prompt_curves,
    )

    proxy, gold = prompt_curves(samples, ns)  # [P, K]
    pm, gm = proxy.mean(axis=0).tolist(), gold.mean(axis=0).tolist()
    boot = bootstrap_prompts(proxy, gold, ns, n_boot=n_boot, seed=seed)
    points = []
    for k, n in enumerate(ns):
        plo, phi = percentile_interval(boot["proxy_means"][:, k])
        glo, ghi = percentile_interval(boot["gold_means"][:, k])
        points.append(BonPoint(n=n, kl=kl_bon(n), proxy=pm[k], proxy_lo=plo, proxy_hi=phi, gold=gm[k],
                               gold_lo=glo, gold_hi=ghi))
    at = parting_n(ns, pm, gm)
    a, b = (ns.index(at) if at is not None else 0), len(ns) - 1
    gd, pd = gm[b] - gm[a], pm[b] - pm[a]
    glo, ghi = percentile_interval(boot["gold_means"][:, b] - boot["gold_means"][:, a])
    plo, phi = percentile_interval(boot["proxy_means"][:, b] - boot["proxy_means"][:, a])
    share = sum(p is not None for p in boot["parted"]) / max(1, n_boot)
    at_lo, at_hi = parted_interval(boot["parted"])
    parting = Parting(parted_at=at, kl=kl_bon(at) if at else None, from_n=ns[a], to_n=ns[b], gold_change=gd,
                      gold_change_lo=glo, gold_change_hi=ghi, proxy_change=pd, proxy_change_lo=plo,
                      proxy_change_hi=phi, share=share, at_lo=at_lo, at_hi=at_hi, verdict="")
    parting.verdict = parting_verdict(parting)
    return points, parting


def parting_verdict(p: Parting) -> str:
    """One sentence: where the curves part (and whether detectably), or that they did not.

    >>> base = dict(kl=0.64, from_n=4, to_n=16, gold_change=-0.2, gold_change_lo=-0.3, gold_change_hi=-0.1,
    ...             proxy_change=0.5, proxy_change_lo=0.3, proxy_change_hi=0.7, share=0.9, at_lo=2, at_hi=8)
    >>> print(parting_verdict(Parting(parted_at=4, verdict="", **base)))
    parted at n=4 (KL 0.64 nats): from n=4 to n=16 the gold score changes by -0.200 [-0.300, -0.100] while \
the proxy rises by +0.500 [+0.300, +0.700]; 90% of bootstrap resamples part (at n in [2, 8])
    >>> print(parting_verdict(Parting(parted_at=None, verdict="", **{**base, "from_n": 1, "share": 0.0})))
    did not part within n<=16: from n=1 to n=16 the gold score changes by -0.200 [-0.300, -0.100] and the \
proxy by +0.500 [+0.300, +0.700]
    """
    g = f"{p.gold_change:+.3f} [{p.gold_change_lo:+.3f}, {p.gold_change_hi:+.3f}]"
    pr = f"{p.proxy_change:+.3f} [{p.proxy_change_lo:+.3f}, {p.proxy_change_hi:+.3f}]"
    hi = "did not part" if p.at_hi is None else p.at_hi
    span = "" if p.at_lo is None else f" (at n in [{p.at_lo}, {hi}])"
    resampled = f"{p.share:.0%} of bootstrap resamples part{span}"
    if p.parted_at is None:
        tail = f"; {resampled}" if p.share > 0 else ""
        return (f"did not part within n<={p.to_n}: from n={p.from_n} to n={p.to_n} the gold score changes "
                f"by {g} and the proxy by {pr}{tail}")
    detectable = p.gold_change_hi < 0 and p.proxy_change_lo > 0
    head = f"parted at n={p.parted_at} (KL {p.kl:.2f} nats)"
    if not detectable:
        head += " by the point estimates, not detectably (an interval below includes 0)"
    return (f"{head}: from n={p.from_n} to n={p.to_n} the gold score changes by {g} while the proxy rises by "
            f"{pr}; {resampled}")


# ------------------------------------------------------------------------------------------ checkpoints
def load_checkpoints(path: str | Path) -> list[CheckpointPoint]:
    """Checkpoints from a JSONL file: ``{"name", "step", "kl", "proxy", "gold"}`` a line (``kl`` required).

    A bad line is one error naming the file, the line and the field.
    """
    import json

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CaiError(f"checkpoints {p}: cannot read it: {exc.strerror}",
                       hint="pass a JSONL file of {\"name\", \"kl\", \"proxy\", \"gold\"} lines") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("a JSON object expected")
            row.setdefault("name", f"line {n}")
            out.append(CheckpointPoint.model_validate(row))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or "line"
            raise CaiError(f"{p}:{n}: {field}: {err['msg']}",
                           hint='write {"name": ..., "kl": 0.3, "proxy": 1.2, "gold": 0.7} lines') from None
        except ValueError as exc:
            raise CaiError(f"{p}:{n}: not a JSON object ({exc})",
                           hint='write {"name": ..., "kl": 0.3, "proxy": 1.2, "gold": 0.7} lines') from None
    return out


def checkpoint_from_scores(name: str, kl: float, proxy: Sequence[float | None],
                           gold: Sequence[float | None] = (), step: int | None = None) -> CheckpointPoint:
    """A checkpoint's point from its measured KL and the proxy and gold scores of its answers (means).

    >>> checkpoint_from_scores("dpo", 0.4, [1.0, 2.0, None], [0.5, 0.7]).model_dump()
    {'name': 'dpo', 'kl': 0.4, 'proxy': 1.5, 'gold': 0.6, 'step': None}
    """
    def mean(xs: Sequence[float | None]) -> float | None:
        ok = [float(x) for x in xs if x is not None and math.isfinite(x)]
        return round(sum(ok) / len(ok), 12) if ok else None

    return CheckpointPoint(name=name, kl=kl, proxy=mean(proxy), gold=mean(gold), step=step)


def checkpoints_from_curve(name: str, rows: Sequence[dict[str, float]], *, kl_key: str = "kl",
                           proxy_key: str = "reward", gold_key: str | None = None,
                           most: int = 20) -> list[CheckpointPoint]:
    """Points from a training log (PPO's ``kl`` and ``reward`` per step), at most ``most`` evenly spaced.

    >>> [(c.step, c.kl, c.proxy) for c in checkpoints_from_curve("ppo", [{"step": 1, "kl": 0.1, "reward": 2},
    ...                                                                  {"step": 2, "loss": 1}], most=5)]
    [(1, 0.1, 2.0)]
    """
    usable = [r for r in rows if r.get(kl_key) is not None and r.get(proxy_key) is not None]
    stride = max(1, math.ceil(len(usable) / most))
    return [CheckpointPoint(name=name, kl=r[kl_key], proxy=r[proxy_key],
                            gold=r.get(gold_key) if gold_key else None,
                            step=int(r["step"]) if "step" in r else None) for r in usable[::stride]]


# ------------------------------------------------------------------------------------------ the study
def best_of_n_study(prompts: Sequence[Any], policy: Callable[[], Any], proxy: Scorer, gold: Scorer,
                    out: str | Path, *, model: str, kind: str = "hf", ns: Sequence[int] = DEFAULT_NS,
                    temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 128, seed: int = 0,
                    system_prompt: str | None = None, prompts_per_call: int = 4, n_boot: int = N_BOOT,
                    checkpoints: Sequence[CheckpointPoint] = ()) -> OverOptimization:
    """Sample ``max(ns)`` answers per prompt from ``policy()``, score them by proxy and gold, and measure.

    ``policy`` is called only when a sample is missing (a finished study loads no model);
    the scorers likewise. Prompts where a scorer failed on any sample are left out of the
    curves (counted in ``dropped_prompts``).
    """
    from cai.core.records import SamplingParams

    ladder = check_ns(ns)
    if temperature <= 0:
        raise CaiError(f"best-of-n: temperature {temperature} draws the same answer n times",
                       hint="sample with a temperature above 0 (1.0 is the policy's own distribution)")
    if not prompts:
        raise CaiError("best-of-n: no prompts", hint="give the study a prompt set")
    folder = Path(out)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                            n=ladder[-1])
    answers = sample_answers(prompts, folder / "answers.jsonl", model, kind, policy, params,
                             system_prompt=system_prompt, prompts_per_call=prompts_per_call)
    records = [r for recs in answers.values() for r in recs]
    scores = folder / "scores.jsonl"
    pv, gv = score_samples(records, proxy, scores), score_samples(records, gold, scores)
    samples, dropped = [], 0
    for recs in answers.values():
        ps, gs = [pv[r.id] for r in recs], [gv[r.id] for r in recs]
        if any(v is None for v in ps + gs):
            dropped += 1
            continue
        samples.append((ps, gs))
    if dropped:
        log.warning("best-of-n: %d prompt(s) left out: a scorer failed on one of their samples", dropped)
    result = OverOptimization(
        policy=model, proxy=proxy.label or proxy.name, gold=gold.label or gold.name, ns=ladder,
        temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, n_boot=n_boot,
        prompts=len(samples), dropped_prompts=dropped, checkpoints=list(checkpoints),
        proxy_sd=_sd([v for s in samples for v in s[0]]), gold_sd=_sd([v for s in samples for v in s[1]]),
        files={"answers": str(folder / "answers.jsonl"), "scores": str(scores)})
    if samples:
        result.points, result.parting = figures(samples, ladder, n_boot=n_boot, seed=seed)
    return result
