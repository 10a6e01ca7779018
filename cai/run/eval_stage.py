"""The ``eval`` stage of ``cai run``.

The held-out prompts of the ``split`` stage (never seen in training) go to
:func:`cai.eval.run.evaluate` with the models the recipe compares (``base``,
``sft``, ``trained``; the first is the baseline), the constitution, the judge,
the preference model (for the reward-hacking probes), the training curves, and
the multiple-choice benchmarks the recipe names (``eval.truthfulqa``, ``eval.bbq``).
It writes ``eval/eval.json``, ``eval/report.md`` and ``eval/report.html``; the
before/after table ``cai run`` prints is read back from ``eval.json``
(:func:`cai.eval.compare.format_comparison_table`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cai.core.errors import CaiError
from cai.run.engine import RunContext, Stage, file_digest
from cai.run.recipe import Recipe, recipe_constitution, round_stage

if TYPE_CHECKING:
    from cai.eval.spec import EvalSpec

def _trained_stage(recipe: Recipe) -> str:
    return round_stage("policy", recipe.rounds) if recipe.policy.method != "none" else "sft"


def round_models(recipe: Recipe) -> list[tuple[str, str]]:
    """``(eval name, stage)`` of each round's policy when the recipe iterates (``trained`` stands for them
    all, so the report shows every figure per round), else ``[("trained", <its stage>)]``."""
    if recipe.rounds == 1:
        return [("trained", _trained_stage(recipe))]
    return [(f"round{r}", round_stage("policy", r)) for r in range(1, recipe.rounds + 1)]


def eval_spec(recipe: Recipe, ctx: RunContext) -> EvalSpec:
    """The :class:`cai.eval.spec.EvalSpec` of this run (raises a one-line error for bad ``eval.options``)."""
    from pydantic import ValidationError

    from cai.core.errors import pydantic_error_line
    from cai.eval.spec import EvalModel, EvalSpec
    from cai.run.engines import sampling_spec

    spec, base = recipe.eval, recipe.model

    def served(name: str, stage: str | None) -> EvalModel:  # a model's answers: in process or its engine
        s = sampling_spec(ctx, base, f"eval-{name}", ctx.output(stage, "model") if stage else None)
        return EvalModel(name=name, model=s.name, backend=s.backend, base_urls=list(s.base_url))

    models = []
    names = spec.models if "models" in spec.model_fields_set or not recipe.regions else ["trained"]
    for name in names:
        if name == "trained" and recipe.regions:  # the core and every core+region layer
            from cai.run.regions import regional_models

            models += regional_models(recipe, served)
            continue
        if name == "base":
            models.append(served("base", None))
        elif name == "sft":
            models.append(served("sft", "sft"))
        else:
            models += [served(n, stage) for n, stage in round_models(recipe)]
    judge = sampling_spec(ctx, recipe.eval.feedback_model or recipe.feedback(), "feedback")
    sets = {k: ctx.output("split", f) for k, f in (("redteam", "eval_redteam"), ("benign", "eval_helpful"))
            if ctx.outputs["split"][f"{f}_count"]}
    if recipe.regions:  # the matrix of every layer on every region's held-out set replaces the core's sets
        from cai.run.regions import regional_matrix

        sets = {"matrix": regional_matrix(recipe, ctx)}
    curves = {}  # each trainer's folder: its metrics.jsonl (ppo) or its last checkpoint's trainer_state.json
    for s in ("sft", "rm", "policy"):
        folder = ctx.run_dir / ctx.outputs[s]["model"] if "model" in ctx.outputs.get(s, {}) else None
        if folder is not None and any(any(folder.glob(g)) for g in ("metrics.jsonl", "*/trainer_state.json",
                                                                     "trainer_state.json")):
            curves[s] = folder
    data: dict[str, Any] = {
        "models": models, "constitution": recipe.constitution, "feedback_model": judge.name,
        "feedback_backend": judge.backend, "feedback_base_urls": list(judge.base_url),
        "max_new_tokens": spec.max_new_tokens, "seed": recipe.prompts.seed, "batch_size": base.batch_size,
        "device": base.device, "dtype": base.dtype, "curves": curves, **sets,
        "lookalike": (ctx.output("split", "eval_lookalike")
                      if "eval_lookalike" in ctx.outputs["split"] and not recipe.regions else spec.lookalike),
        "judge_audit": spec.judge_audit, "refusal_audit": spec.refusal_audit,
        "truthfulqa": spec.truthfulqa, "bbq": spec.bbq,
        "preference_model": ctx.output("rm", "model") if "rm" in ctx.outputs else None,
        "training_data": {k: ctx.output(stage, key) for k, stage, key in
                          (("sft", "critique", "sft"), ("preferences", "label", "preferences"))
                          if key in ctx.outputs.get(stage, {})},
    }
    try:
        return EvalSpec.model_validate({**data, **spec.options})
    except ValidationError as exc:
        raise CaiError(pydantic_error_line(exc, "eval"), hint="check eval.options in the recipe") from None


def eval_stage(recipe: Recipe) -> Stage:
    spec = recipe.eval
    trained = [stage for _, stage in round_models(recipe) if stage != "sft"]
    deps = ("split", "sft", *trained)
    if recipe.regions:
        from cai.run.regions import CORE_STAGE, region_scope

        deps = (*deps, CORE_STAGE, *(region_scope(r).name(s) for r in recipe.regions
                                     for s in ("split", "adapter")))
    if "rm" in recipe.stage_names():
        deps = (*deps, "rm")

    def fingerprint(ctx: RunContext) -> Any:
        judge = (spec.feedback_model or recipe.feedback()).identity()
        return {"eval": spec.model_dump(mode="json", exclude={"lookalike", "judge_audit", "refusal_audit",
                                                              "truthfulqa", "bbq"}),
                "base": recipe.model.identity(),
                "judge": judge, "constitution": recipe_constitution(recipe).hash,
                "lookalike": file_digest(spec.lookalike) if spec.lookalike else None,
                **{k: file_digest(p) for k, p in (("judge_audit", spec.judge_audit),
                                                  ("refusal_audit", spec.refusal_audit),
                                                  ("truthfulqa", spec.truthfulqa), ("bbq", spec.bbq)) if p}}

    def run(ctx: RunContext) -> dict[str, Any]:
        try:
            from cai.eval.run import evaluate
        except ImportError:
            raise CaiError("the eval stage needs cai.eval.run, which this installation lacks",
                           hint="set eval.enabled: false in the recipe, or update cai") from None
        out = ctx.dir("eval")
        evaluate(eval_spec(recipe, ctx), out)
        return {"eval": ctx.rel(out / "eval.json"), "report": ctx.rel(out / "report.html"),
                "report_md": ctx.rel(out / "report.md")}

    return Stage("eval", deps, fingerprint, run)
