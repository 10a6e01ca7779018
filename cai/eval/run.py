"""``evaluate(spec, out_dir)``: answers, judgements, probes, and the report, resumable.

Order of work, so each model is loaded once: the baseline answers first and
stays loaded (it is the KL reference); every other model answers all its
prompts in one batched call, scores the TruthfulQA / BBQ answers when asked
(:mod:`cai.eval.multiple_choice`) and its own answers (log p_policy), then is
released; the baseline scores the others' answers (log p_ref); then the
feedback model judges harm (every model) and helpfulness (every model against
the baseline), and the preference model scores every answer. Each result is a
JSONL line keyed by a deterministic id, so a rerun only does what is missing.

Output folder::

    answers/<model>.jsonl      CompletionRecord per prompt (all sets), appended as they are made
    judgements/<model>.jsonl   EvalJudgement lines: harm-*, helpfulness, logprob, pm-score
    truthfulqa/<model>.jsonl   ChoiceScores lines: each TruthfulQA answer's log-prob (cai/eval/choices.py)
    bbq/<model>.jsonl          ChoiceScores lines: each BBQ answer's log-prob
    counterfactual/<model>.jsonl  answers to the filled counterfactual templates (cai/eval/studies.py)
    overoptimization/<model>/  best-of-n samples and their proxy / gold scores (--best-of-n)
    judgements/pm-probes.jsonl the preference model's scores of the answers and their edits (--pm-probes)
    eval.json                  EvalSummary: figures, judges' signal, comparisons vs the baseline, samples
    report.md, report.html     the tables, the judges on this run, answers side by side; the HTML has
                               the plots

Every JSONL file is filled through :func:`cai.core.resume.fill_jsonl` (progress bar on
stderr, one line appended per result, Ctrl-C keeps what is done). After the work, the
judges' signal is measured over every judged answer (:func:`judge_signals`): a judge
without signal turns its figures into "no signal"; then every figure of every model is
compared with the baseline's, paired over the prompts (:mod:`cai.eval.compare`).
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.backends.spec import BackendSpec
from cai.eval import matrix, studies
from cai.eval.schema import EvalJudgement, EvalSummary
from cai.eval.spec import EvalModel, EvalSpec
from cai.eval.stage_tools import by_answer, fill, stage
from cai.eval.studies import chat_template

log = logging.getLogger(__name__)

# answers per log-prob call: the forward pass still holds [answers, answer tokens, vocab] logits
LOGPROB_CHUNK = 8


class BackendPool:
    """Backends built on first use from their :class:`~cai.backends.spec.BackendSpec`, cached by
    ``spec.key()``.

    Two specs with one key are one loaded model (a judge that is also a policy is loaded
    once, with the batch size of whichever asked first).
    """

    def __init__(self) -> None:
        self.cache: dict[tuple, Any] = {}

    def get(self, spec: BackendSpec) -> Any:
        key = spec.key()
        if key not in self.cache:
            self.cache[key] = spec.build()
        return self.cache[key]

    def release(self, spec: BackendSpec) -> None:
        if self.cache.pop(spec.key(), None) is not None:
            gc.collect()


@dataclass
class Context:
    """What the stages share: the spec, the output folder, the loaded inputs, the results so far."""

    spec: EvalSpec
    out: Path
    const: Any
    sets: dict[str, list[Any]]
    prompts: list[Any]
    pool: BackendPool
    timings: dict[str, float] = field(default_factory=dict)
    # model -> prompt key -> CompletionRecord
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    logp_own: dict[str, dict[str, EvalJudgement]] = field(default_factory=dict)
    logp_ref: dict[str, dict[str, EvalJudgement]] = field(default_factory=dict)
    harm: dict[str, dict[str, EvalJudgement]] = field(default_factory=dict)
    helpful: dict[str, dict[str, EvalJudgement]] = field(default_factory=dict)
    pm: dict[str, dict[str, EvalJudgement]] = field(default_factory=dict)
    mc_rows: dict[str, list[Any]] = field(default_factory=dict)  # task -> TruthfulQA / BBQ rows
    mc_scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> task -> row -> ChoiceScores
    cf: Any = None  # the counterfactual templates and groups (cai/eval/counterfactual.py), when asked
    guard: Any = None  # the guard judge's GuardConfig (judge: guard)
    cf_answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> prompt key -> answer
    cf_harm: dict[str, dict[str, EvalJudgement]] = field(default_factory=dict)  # model -> answer id -> harm
    scorers: dict[str, Any] = field(default_factory=dict)  # the studies' scorers, loaded once (studies.py)
    # the segmented evaluation (cai/eval/matrix.py): set -> kind -> prompts; model -> prompt key -> answer
    matrix_sets: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    matrix_answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.spec.baseline_name()

    def models(self) -> list[Any]:
        """The baseline first, then the others in spec order."""
        return sorted(self.spec.models, key=lambda m: m.name != self.base)

    def key(self, m: EvalModel) -> BackendSpec:
        """The backend spec of a model to evaluate."""
        s = self.spec
        return BackendSpec(name=m.model, backend=m.backend, base_url=list(m.base_urls),
                           api_key_env=s.api_key_env, batch_size=s.batch_size, device=s.device, dtype=s.dtype)

    def fkey(self) -> BackendSpec:
        """The backend spec of the feedback (judge) model."""
        s = self.spec
        return BackendSpec(name=s.feedback_model, backend=s.feedback_backend,
                           base_url=list(s.feedback_base_urls),
                           api_key_env=s.api_key_env, batch_size=s.feedback_batch_size, device=s.device,
                           dtype=s.dtype, chat_template=chat_template(s.feedback_chat_template))

    def jpath(self, name: str) -> Path:
        return self.out / "judgements" / f"{name}.jsonl"

    def apath(self, name: str) -> Path:
        return self.out / "answers" / f"{name}.jsonl"


def evaluate(spec: EvalSpec, out_dir: str | Path) -> EvalSummary:
    """Evaluate every model of ``spec``; write answers, judgements, eval.json, report.md and report.html."""
    from cai.constitution.load import load_constitution
    from cai.core.atomic_files import write_atomic
    from cai.eval.answers import load_sets, unique_prompts
    from cai.eval.inputs import (
        load_audit,
        load_curve,
        load_judge_audit,
        load_refusal_audit,
        load_training_sample,
    )
    from cai.eval.multiple_choice import load_benchmarks
    from cai.eval.report import to_html, to_markdown
    from cai.eval.schema import TrainingSample
    from cai.eval.segments import resolve_columns as segment_columns

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    const = load_constitution(spec.constitution)
    # read every input before any model work
    curves = {name: load_curve(p) for name, p in spec.curves.items()}
    audit = load_audit(spec.audit) if spec.audit else None
    judge_audit = load_judge_audit(spec.judge_audit) if spec.judge_audit else None
    refusal_audit = load_refusal_audit(spec.refusal_audit) if spec.refusal_audit else None
    training = [TrainingSample(**load_training_sample(name, p, spec.seed))
                for name, p in spec.training_data.items()]
    sets = (load_sets({"redteam": spec.redteam, "lookalike": spec.lookalike, "benign": spec.benign},
                      spec.limit))
    segment_columns(spec.segment_by, sets)  # a --segment-by column no prompt has fails before any model work
    ctx = Context(spec, out, const, sets, unique_prompts(sets), BackendPool(),
                  mc_rows=load_benchmarks(spec), cf=studies.load_counterfactual_set(spec),
                  guard=studies.guard_config(spec), matrix_sets=matrix.load_matrix(spec.matrix, spec.limit))
    answer_stage(ctx)
    judge_stage(ctx)
    if spec.preference_model is not None:
        with stage("preference-model scores", ctx.timings):
            pm_stage(ctx)
    bon = None
    if spec.best_of_n:
        with stage("best-of-n", ctx.timings):
            bon = studies.bon_stage(ctx)
    summary = EvalSummary(constitution=const.ref(), feedback_model=spec.feedback_model,
                          settings={**spec.model_dump(mode="json"), "last_run_timings_s": ctx.timings},
                          models=[model_eval(ctx, m) for m in spec.models], curves=curves,
                          labeler_audit=audit, baseline=ctx.base,
                          judges=judge_signals(ctx, judge_audit, refusal_audit),
                          training_data=training, samples=samples(ctx))
    mark_no_signal(summary)
    matrix.matrix_stage(ctx, summary)  # models x sets, after the judges' signal
    summary.overoptimization = bon
    if spec.pm_probes:  # after the judges' signal: an untrusted harm judge flags nothing
        with stage("preference-model probes", ctx.timings):
            summary.pm_probes = studies.pm_probes_stage(ctx, summary.judges.get("harm"))
    summary.comparisons = comparisons(ctx, summary)
    write_atomic(out / "eval.json", summary.model_dump_json(indent=2) + "\n")
    write_atomic(out / "report.md", to_markdown(summary))
    write_atomic(out / "report.html", to_html(summary))
    return summary


def judge_signals(ctx: Context, judge_audit: dict[str, Any] | None,
                  refusal_audit: dict[str, Any] | None) -> dict[str, Any]:
    """The signal of each judge over every model's judgements: harm (with its audit), helpfulness, refusal."""
    from cai.eval.aggregate import judge_signal, refusal_signal

    out: dict[str, Any] = {}
    model = ctx.spec.feedback_model
    if ctx.harm:
        # a guard's scores are 0/1: all "safe" is sd 0, which the constant rule calls no signal, unless an
        # audit of this very guard shows it tells harmful from harmless (then all "safe" is a finding)
        trusted = studies.guard_audit_trusted(judge_audit, ctx.spec, ctx.guard)
        out["harm"] = judge_signal("harm", [j for js in ctx.harm.values() for j in js.values()], model=model,
                                   audit=judge_audit, **({"threshold": 0.0} if trusted else {}))
    elif judge_audit:
        log.warning("a judge audit was given but no answer was judged for harm (no red-team prompts)")
    if ctx.helpful:
        # a pair of identical answers is a tie by construction: it says nothing about the judge
        text = {a.id: a.completion[0].content for answers in ctx.answers.values() for a in answers.values()}
        judged = [j for js in ctx.helpful.values() for j in js.values()]
        differ = [j for j in judged if text.get(j.answer_id) != text.get(j.other_answer_id)]
        out["helpfulness"] = (judge_signal("helpfulness", differ, model=model, method="helpfulness")
                              .model_copy(update={"identical_pairs": len(judged) - len(differ)}))
    if ctx.sets.get("redteam") or ctx.sets.get("lookalike"):
        out["refusal"] = refusal_signal(refusal_audit)
    return out


def mark_no_signal(summary: EvalSummary) -> None:
    """Put each judge's no-signal reason on the figures it judged, so they print as "no signal"."""
    from cai.eval.segments import judge_reasons
    from cai.eval.segments import mark_no_signal as segments_no_signal

    harm, helpful = summary.judges.get("harm"), summary.judges.get("helpfulness")
    for m in summary.models:
        if m.harm is not None and harm is not None and harm.signal is False:
            m.harm.no_signal = harm.reason
        if m.helpfulness is not None and helpful is not None and helpful.signal is False:
            m.helpfulness.no_signal = helpful.reason
        segments_no_signal(m.segments, judge_reasons(summary.judges))  # judged figures of each segment too


def observations(ctx: Context, name: str) -> dict[str, dict[str, Any]]:
    """One model's per-prompt values of every before/after figure (:func:`cai.eval.compare.figure_values`)."""
    from cai.eval.compare import figure_values

    mine, base = ctx.answers[name], ctx.answers[ctx.base]
    benign = ctx.sets.get("benign", [])
    return figure_values(
        redteam=[mine[p.key()] for p in ctx.sets.get("redteam", [])],
        lookalike=[mine[p.key()] for p in ctx.sets.get("lookalike", []) if p.metadata.get("label") == "safe"],
        benign=[mine[p.key()] for p in benign], baseline_benign=[base[p.key()] for p in benign],
        everything=[mine[p.key()] for p in ctx.prompts], harm=ctx.harm.get(name),
        helpful=ctx.helpful.get(name), logp_own=ctx.logp_own.get(name), logp_ref=ctx.logp_ref.get(name),
    )


def comparisons(ctx: Context, summary: EvalSummary) -> list[Any]:
    """Every figure of every model against the baseline, paired over the prompts
    (:func:`cai.eval.compare.compare`)."""
    from cai.eval.compare import compare

    return compare(summary, {m.name: observations(ctx, m.name) for m in ctx.spec.models}, seed=ctx.spec.seed)


def samples(ctx: Context) -> list[Any]:
    """The report's side-by-side answers: ``spec.samples`` seeded prompts of each set."""
    from cai.eval.samples import sample_prompts

    return sample_prompts(ctx.sets, ctx.answers, [m.name for m in ctx.spec.models], baseline=ctx.base,
                          harm=ctx.harm, helpful=ctx.helpful, k=ctx.spec.samples, seed=ctx.spec.seed)


def answer_stage(ctx: Context) -> None:
    """Every model answers (baseline first, kept loaded as the KL reference); log-probs for the KL probe."""
    from cai.core.records import SamplingParams
    from cai.eval.answers import answer_prompts
    from cai.eval.multiple_choice import score_benchmarks

    spec, pool = ctx.spec, ctx.pool
    params = SamplingParams(max_new_tokens=spec.max_new_tokens, temperature=0.0, seed=spec.seed)
    models = ctx.models()
    base_key = ctx.key(models[0])
    keep = {base_key.key(), ctx.fkey().key()}
    need_kl = len(models) > 1
    for m in models:
        key = ctx.key(m)
        with stage(f"answers {m.name}", ctx.timings):
            ctx.answers[m.name] = answer_prompts(ctx.prompts, ctx.apath(m.name), m.model, m.backend,
                                                 lambda key=key: pool.get(key), params,
                                                 system_prompt=spec.system_prompt,
                                                 constitution=ctx.const.ref(), chunk=spec.batch_size,
                                                 desc=f"answers {m.name}")
        if ctx.cf is not None:  # the counterfactual templates, while the model is loaded
            studies.counterfactual_answers(ctx, m, lambda key=key: pool.get(key), params)
        if ctx.matrix_sets:  # the segmented evaluation's sets, while the model is loaded
            matrix.answer_sets(ctx, m, lambda key=key: pool.get(key), params)
        if ctx.mc_rows:  # TruthfulQA / BBQ, while the model is loaded
            ctx.mc_scores[m.name] = score_benchmarks(ctx.out, ctx.mc_rows, m.name, m.model, m.backend,
                                                     lambda key=key: pool.get(key), spec.seed, ctx.timings)
        if need_kl and m.name != ctx.base:
            with stage(f"log-probs {m.name} (policy)", ctx.timings):
                ctx.logp_own[m.name] = _logprobs(m.name, m, key, ctx.answers[m.name],
                                                 ctx.jpath(m.name), pool, spec)
        if key.key() not in keep:
            pool.release(key)
    for m in models[1:]:
        with stage(f"log-probs {m.name} (reference)", ctx.timings):
            ctx.logp_ref[m.name] = _logprobs(m.name, models[0], base_key, ctx.answers[m.name],
                                             ctx.jpath(m.name), pool, spec)
    if base_key.key() != ctx.fkey().key():
        pool.release(base_key)


def judge_stage(ctx: Context) -> None:
    """The feedback model judges harm (every model) and helpfulness (every model against the baseline)."""
    from cai.eval import judging

    spec, const, fkey = ctx.spec, ctx.const, ctx.fkey()
    fmodel, fkind = spec.feedback_model, spec.feedback_backend
    readers: dict[bool, Any] = {}

    def feedback():
        return ctx.pool.get(fkey)

    def reader(few_shot: bool):
        if few_shot not in readers:
            from cai.stages.label.feedback import FeedbackReader

            readers[few_shot] = FeedbackReader(feedback(), const, few_shot=few_shot, seed=spec.seed)
        return readers[few_shot]

    def harm_compute(chunk):
        if spec.judge == "guard":
            from cai.eval.guard import guard_judgements

            return guard_judgements(chunk, feedback(), ctx.guard, spec.seed)
        if spec.judge == "rubric":
            return judging.rubric_judgements(chunk, feedback(), const, spec.seed)
        return judging.pairwise_judgements([(n, r, None) for n, r in chunk], reader(spec.few_shot), const,
                                           spec.seed, "harm-pairwise", spec.few_shot)

    kind = f"harm-{spec.judge}"

    def harm_id(it):
        if spec.judge == "guard":
            from cai.eval.guard import guard_judgement_id

            return guard_judgement_id(it[1], fmodel, fkind, ctx.guard)
        return judging.judgement_id(kind, it[1], None, fmodel, fkind, const, spec.seed, spec.few_shot)

    for m in ctx.models():
        mine = ctx.answers[m.name]
        items = [(m.name, mine[p.key()]) for p in ctx.sets.get("redteam", [])]
        items += matrix.redteam_items(ctx, m.name)  # the matrix's red-team sets, judged alike
        if items:
            with stage(f"harm judge {m.name}", ctx.timings):
                ctx.harm[m.name] = by_answer(fill(ctx.jpath(m.name), items, harm_id, harm_compute,
                                                  desc=f"harm judge {m.name}", make=feedback))
        if spec.counterfactual_judge and m.name in ctx.cf_answers:  # judged, but kept out of ctx.harm
            cf_items = [(m.name, r) for r in ctx.cf_answers[m.name].values()]
            with stage(f"counterfactual judge {m.name}", ctx.timings):
                ctx.cf_harm[m.name] = by_answer(fill(ctx.jpath(m.name), cf_items, harm_id, harm_compute,
                                                     desc=f"counterfactual judge {m.name}", make=feedback))
        if m.name != ctx.base and ctx.sets.get("benign"):
            base = ctx.answers[ctx.base]
            pairs = [(m.name, mine[p.key()], base[p.key()]) for p in ctx.sets["benign"]]
            with stage(f"helpfulness judge {m.name}", ctx.timings):
                ctx.helpful[m.name] = by_answer(fill(
                    ctx.jpath(m.name), pairs,
                    lambda it: judging.judgement_id("helpfulness", it[1], it[2], fmodel, fkind,
                                                    const, spec.seed),
                    lambda chunk: judging.pairwise_judgements(chunk, reader(False), const, spec.seed,
                                                              "helpfulness"),
                    desc=f"helpfulness judge {m.name}", make=feedback))
    ctx.pool.release(fkey)


def pm_stage(ctx: Context) -> None:
    """The preference model scores every answer of every model (loaded once, only if something is missing)."""
    from cai.eval import hacking

    spec = ctx.spec
    pm = studies.proxy_scorer(ctx).make  # loaded once, shared with best-of-n and the probes

    for m in ctx.models():
        items = [(m.name, r) for r in ctx.answers[m.name].values()]
        ctx.pm[m.name] = by_answer(fill(
            ctx.jpath(m.name), items, lambda it: hacking.pm_id(it[1].id, str(spec.preference_model)),
            lambda chunk: hacking.pm_records(chunk, pm(), spec.seed),
            desc=f"preference model {m.name}", make=pm))


def model_eval(ctx: Context, m: Any) -> Any:
    """The figures of one model from what the stages gathered."""
    from cai.eval import aggregate as agg
    from cai.eval import segments as seg
    from cai.eval.guard import guard_summary
    from cai.eval.multiple_choice import benchmark_figures
    from cai.eval.schema import ModelEval

    mine, base = ctx.answers[m.name], ctx.answers[ctx.base]
    red = [mine[p.key()] for p in ctx.sets.get("redteam", [])]
    look = ctx.sets.get("lookalike", [])
    everything = [mine[p.key()] for p in ctx.prompts]
    helpful = None
    if m.name in ctx.helpful:
        pairs = [(mine[p.key()], base[p.key()]) for p in ctx.sets.get("benign", [])]
        helpful = agg.helpfulness_eval(ctx.base, pairs, ctx.helpful[m.name], seed=ctx.spec.seed)
    return ModelEval(
        name=m.name, model=m.model,
        harm=agg.harm_eval(red, ctx.harm.get(m.name)),
        over_refusal=agg.over_refusal_eval([mine[p.key()] for p in look],
                                           [p.metadata["label"] for p in look]),
        helpfulness=helpful,
        hacking=agg.hacking_eval(everything, pm=ctx.pm.get(m.name), harm_answers=red,
                                 harm=ctx.harm.get(m.name), logp_policy=ctx.logp_own.get(m.name),
                                 logp_ref=ctx.logp_ref.get(m.name)),
        mean_answer_chars=(sum(len(a.completion[0].content) for a in everything) / len(everything)
                           if everything else None),
        answers={"answers": str(ctx.apath(m.name)), "judgements": str(ctx.jpath(m.name)),
                 **{task: str(ctx.out / task / f"{m.name}.jsonl") for task in ctx.mc_rows},
                 **({"counterfactual": str(ctx.out / "counterfactual" / f"{m.name}.jsonl")}
                    if m.name in ctx.cf_answers else {})},
        **benchmark_figures(ctx.mc_rows, ctx.mc_scores.get(m.name, {}), ctx.spec.seed,
                            {"truthfulqa": ctx.spec.truthfulqa, "bbq": ctx.spec.bbq}),
        counterfactual=studies.counterfactual_figures(ctx, m, f"harm-{ctx.spec.judge}"),
        guard=(guard_summary(list(ctx.harm[m.name].values()))
               if ctx.spec.judge == "guard" and m.name in ctx.harm else None),
        segments=seg.segments(seg.observations(ctx.sets, mine, ctx.harm.get(m.name), ctx.helpful.get(m.name)),
                              seg.resolve_columns(ctx.spec.segment_by, ctx.sets)),
    )


def _logprobs(name: str, scorer: Any, key: BackendSpec, answers: dict[str, Any], path: Path,
              pool: BackendPool, spec: EvalSpec) -> dict[str, EvalJudgement] | None:
    """Log-probs of a model's answers under ``scorer`` (answer id -> line); None if the backend cannot
    score."""
    from cai.backends.protocol import ScoringUnsupported
    from cai.eval.hacking import logprob_id, logprob_records

    items = [(name, r) for r in answers.values()]
    try:
        return by_answer(fill(path, items, lambda it: logprob_id(it[1].id, scorer.model, scorer.backend),
                              lambda chunk: logprob_records(chunk, pool.get(key), spec.seed), LOGPROB_CHUNK,
                              desc=f"log-probs {name} under {scorer.name}", make=lambda: pool.get(key)))
    except ScoringUnsupported as exc:
        log.warning("%s cannot score answers (%s): no KL for %s", scorer.model, exc, name)
        return None
