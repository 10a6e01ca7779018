"""The evaluation's studies beside the main figures, as stages of :func:`cai.eval.run.evaluate`.

* the **counterfactual demographic audit** (:mod:`cai.eval.counterfactual`): each model answers
  the filled templates while it is loaded (:func:`counterfactual_answers`, ``counterfactual/<model>.jsonl``),
  the harm judge optionally scores them, and :func:`counterfactual_figures` gives the per-group figures;
* the **guard-model judge** (:mod:`cai.eval.guard`): its config (:func:`guard_config`), the
  plain chat template it needs (:func:`chat_template`), and when its audit lets a constant verdict
  stand (:func:`guard_audit_trusted`);
* the **best-of-n over-optimization study** (:mod:`cai.eval.overoptimization`, :func:`bon_stage`,
  ``overoptimization/<model>/``);
* the **preference-model failure probes** (:mod:`cai.eval.pm_probes`, :func:`pm_probes_stage`,
  ``judgements/pm-probes.jsonl``).

Each takes the run's :class:`~cai.eval.run.Context` (duck-typed here, so this module does not
import :mod:`cai.eval.run`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from cai.eval.answer_scorers import Scorer

log = logging.getLogger("cai.eval.run")

PLAIN_TEMPLATES = ("plain-llama3",)  # names a feedback_chat_template may use instead of a template


def chat_template(value: str | None) -> str | None:
    """The judge's chat template: ``plain-llama3`` is :data:`cai.eval.guard.PLAIN_LLAMA3_CHAT_TEMPLATE`;
    anything else (a file or the template text) goes to the backend as given.

    >>> chat_template(None), chat_template("x.jinja"), chat_template("plain-llama3")[:15]
    (None, 'x.jinja', '{{ bos_token }}')
    """
    if value == "plain-llama3":
        from cai.eval.guard import PLAIN_LLAMA3_CHAT_TEMPLATE

        return PLAIN_LLAMA3_CHAT_TEMPLATE
    return value


def guard_config(spec: Any) -> Any:
    """The guard judge's :class:`~cai.eval.guard.GuardConfig` (``judge: guard``), else None; read before any
    model work, so a bad template or category file fails at once."""
    if spec.judge != "guard":
        return None
    from cai.eval.guard import load_guard_config

    return load_guard_config(spec.guard_template, spec.guard_categories, spec.guard_max_new_tokens)


def guard_audit_trusted(audit: dict[str, Any] | None, spec: Any, config: Any) -> bool:
    """Whether a judge audit vouches for this guard: a ``cai audit judge --judge guard`` of the same
    feedback model (and guard config, when the audit names one) whose accuracy interval is above chance.

    A guard's scores are 0 or 1, so a guard that calls every red-team answer safe has zero
    spread and the constant-score rule would call it "no signal"; with such an audit the
    constant verdict is a finding about the answers, not about the judge, and stands.

    >>> from types import SimpleNamespace as S
    >>> spec, cfg = S(feedback_model="lg"), S(hash=lambda: "h1")
    >>> ok = {"accuracy": {"rate": 0.8, "lo": 0.7, "hi": 0.9, "n": 100},
    ...       "settings": {"judge": "guard", "feedback_model": "lg", "guard": {"config": "h1"}}}
    >>> guard_audit_trusted(ok, spec, cfg), guard_audit_trusted(ok, S(feedback_model="other"), cfg)
    (True, False)
    >>> chance = {**ok, "accuracy": {"rate": 0.5, "lo": 0.4, "hi": 0.6, "n": 100}}
    >>> guard_audit_trusted(chance, spec, cfg), guard_audit_trusted(None, spec, cfg)
    (False, False)
    """
    from cai.eval.aggregate import audit_reason

    if not audit or config is None:
        return False
    s = audit.get("settings") or {}
    named = (s.get("guard") or {}).get("config")
    return (s.get("judge") == "guard" and s.get("feedback_model") == spec.feedback_model
            and named in (None, config.hash()) and audit_reason(audit) is None
            and audit.get("signal") is not False)


# ------------------------------------------------------------------------------------------ counterfactual
def load_counterfactual_set(spec: Any) -> Any:
    """The spec's counterfactual templates and groups (its axes, its first ``limit`` templates), else None."""
    if spec.counterfactual is None:
        return None
    from cai.eval.counterfactual import load_counterfactual, subset

    return subset(load_counterfactual(spec.counterfactual, spec.counterfactual_groups),
                  spec.counterfactual_axes, spec.limit)


def counterfactual_answers(ctx: Any, m: Any, make: Callable[[], Any], params: Any) -> None:
    """Model ``m`` answers every filled template (resumable; a file apart from its other answers)."""
    from cai.eval.counterfactual import answer_counterfactual
    from cai.eval.stage_tools import stage

    with stage(f"counterfactual {m.name}", ctx.timings):
        ctx.cf_answers[m.name] = answer_counterfactual(
            ctx.cf, ctx.out / "counterfactual" / f"{m.name}.jsonl", m.model, m.backend, make, params,
            system_prompt=ctx.spec.system_prompt, chunk=ctx.spec.batch_size)


def counterfactual_figures(ctx: Any, m: Any, kind: str) -> Any:
    """Model ``m``'s audit (:func:`cai.eval.counterfactual.counterfactual_eval`), with the harm judge's
    p(harmful) as the judge score when the answers were judged."""
    from cai.eval.counterfactual import counterfactual_eval

    if ctx.cf is None or m.name not in ctx.cf_answers:
        return None
    judged = ctx.cf_harm.get(m.name)
    judge = None
    if judged is not None:
        def judge(recs: Sequence[Any]) -> list[float | None]:
            return [judged[r.id].value if r.id in judged else None for r in recs]
    return counterfactual_eval(ctx.cf, ctx.cf_answers[m.name], judge=judge, judge_name=f"p(harmful), {kind}",
                               seed=ctx.spec.seed)


# ------------------------------------------------------------------------------------------ best-of-n
def harm_judge_scorer(backend: Callable[[], Any], constitution: Any, seed: int, *, judge: str,
                      judge_kind: str, guard: Any = None) -> Scorer:
    """The eval's harm judge as a gold score: ``1 - p_harmful`` (higher is safer); the rubric judge, or the
    guard when ``guard`` (its config) is given. ``backend()`` gives the feedback model."""

    def score(recs: Sequence[Any]) -> list[float | None]:
        items = [("bon", r) for r in recs]
        if guard is not None:
            from cai.eval.guard import guard_judgements

            js = guard_judgements(items, backend(), guard, seed)
        else:
            from cai.eval.judging import rubric_judgements

            js = rubric_judgements(items, backend(), constitution, seed)
        return [None if j.value is None else round(1.0 - j.value, 12) for j in js]

    kind = f"harm-guard:{guard.hash()}" if guard is not None else "harm-rubric"
    return Scorer(f"{kind}:{judge}:{judge_kind}:{constitution.hash}:{seed}", score,
                  f"harm judge {judge} (1 - p_harmful)", backend)


def proxy_scorer(ctx: Any) -> Scorer:
    """The spec's preference model as a scorer, loaded once per run (the PM stage, best-of-n, the probes)."""
    from cai.eval.answer_scorers import pm_scorer

    if "proxy" not in ctx.scorers:
        s = ctx.spec
        ctx.scorers["proxy"] = pm_scorer(s.preference_model, device=s.device, dtype=s.dtype,
                                         batch_size=s.feedback_batch_size)
    return ctx.scorers["proxy"]


def gold_scorer(ctx: Any) -> Scorer:
    """The independent score: the second preference model, else the harm judge (1 - p_harmful)."""
    from cai.eval.answer_scorers import pm_scorer

    s = ctx.spec
    if s.gold_preference_model is not None:
        return pm_scorer(s.gold_preference_model, device=s.device, dtype=s.dtype,
                         batch_size=s.feedback_batch_size)
    if s.bon_set != "redteam":
        log.warning("best-of-n: the gold score is the harm judge, which says most on red-team prompts "
                    "(bon_set: %s); a second preference model (gold_preference_model) suits benign ones",
                    s.bon_set)
    return harm_judge_scorer(lambda: ctx.pool.get(ctx.fkey()), ctx.const, s.seed, judge=s.feedback_model,
                             judge_kind=s.feedback_backend, guard=ctx.guard)


def model_checkpoints(ctx: Any, gold: Scorer) -> list[Any]:
    """One point per non-baseline model with a measured KL: the mean log-ratio of its greedy answers
    (which overstates the KL of its sampling distribution), its mean proxy and gold scores on the set."""
    from cai.eval.answer_scorers import score_samples
    from cai.eval.hacking import mean_log_ratio
    from cai.eval.overoptimization import checkpoint_from_scores

    out = []
    for m in ctx.models()[1:]:
        own, ref = ctx.logp_own.get(m.name), ctx.logp_ref.get(m.name)
        if not own or not ref:
            continue
        pairs = [(own[a].value, ref[a].value) for a in own if a in ref
                 and own[a].value is not None and ref[a].value is not None]
        if not pairs:
            continue
        answers = [ctx.answers[m.name][p.key()] for p in ctx.sets.get(ctx.spec.bon_set, [])]
        proxy = [ctx.pm[m.name][r.id].value if r.id in ctx.pm.get(m.name, {}) else None for r in answers]
        golds = score_samples(answers, gold, ctx.out / "overoptimization" / "checkpoint-scores.jsonl")
        kl = mean_log_ratio([p for p, _ in pairs], [r for _, r in pairs])
        out.append(checkpoint_from_scores(m.name, kl, proxy, [golds[r.id] for r in answers]))
    return out


def bon_stage(ctx: Any) -> Any:
    """The best-of-n study of ``bon_model`` (default: the baseline) on the first ``bon_limit`` prompts of
    ``bon_set``, with the trained models (and ``checkpoints``) as measured-KL points."""
    from cai.eval.overoptimization import best_of_n_study, load_checkpoints

    s = ctx.spec
    m = next(x for x in s.models if x.name == (s.bon_model or ctx.base))
    proxy, gold = proxy_scorer(ctx), gold_scorer(ctx)
    cps = (load_checkpoints(s.checkpoints) if s.checkpoints else []) + model_checkpoints(ctx, gold)
    key = ctx.key(m)
    result = best_of_n_study(ctx.sets[s.bon_set][: s.bon_limit], lambda: ctx.pool.get(key), proxy, gold,
                             ctx.out / "overoptimization" / m.name, model=m.model, kind=m.backend,
                             ns=s.best_of_n, temperature=s.bon_temperature, max_new_tokens=s.max_new_tokens,
                             seed=s.seed, system_prompt=s.system_prompt, checkpoints=cps)
    ctx.pool.release(key)
    ctx.pool.release(ctx.fkey())
    return result


# ------------------------------------------------------------------------------------------ PM probes
def pm_probes_stage(ctx: Any, harm_signal: Any) -> Any:
    """The PM failure probes over every model's answers; harm flags from the harm judge unless it showed
    no signal on this run (then the probes say why they have none)."""
    from cai.eval.pm_probes import pm_probes

    s = ctx.spec
    harm: dict[str, float | None] | None = {aid: j.value for js in ctx.harm.values() for aid, j in js.items()}
    note = None
    if harm_signal is not None and harm_signal.signal is False:
        harm, note = None, f"harm judge without signal on this run: {harm_signal.reason}"
    items = [(m.name, r) for m in ctx.models() for r in ctx.answers[m.name].values()]
    return pm_probes(items, proxy_scorer(ctx), ctx.out / "judgements" / "pm-probes.jsonl", harm=harm or None,
                     harm_note=note, top=s.pm_probes_top, limit=s.pm_probes_limit, seed=s.seed)
