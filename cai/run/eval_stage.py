"""The ``eval`` stage of ``cai run``.

The held-out prompts of the ``split`` stage (never seen in training) go to
:func:`cai.eval.run.evaluate` with the models the recipe compares (``base``,
``sft``, ``trained``; the first is the baseline), the constitution, the judge,
the preference model (for the reward-hacking probes) and the training curves.
It writes ``eval/eval.json``, ``eval/report.md`` and ``eval/report.html``; the
before/after table ``cai run`` prints is read back from ``eval.json``
(:func:`cai.eval.compare.format_comparison_table`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cai.core.errors import CaiError
from cai.run.engine import RunContext, Stage, file_digest
from cai.run.recipe import Recipe, recipe_constitution

if TYPE_CHECKING:
    from cai.eval.spec import EvalSpec

def _trained_stage(recipe: Recipe) -> str:
    return "policy" if recipe.policy.method != "none" else "sft"


def eval_spec(recipe: Recipe, ctx: RunContext) -> EvalSpec:
    """The :class:`cai.eval.spec.EvalSpec` of this run (raises a one-line error for bad ``eval.options``)."""
    from pydantic import ValidationError

    from cai.core.errors import pydantic_error_line
    from cai.eval.spec import EvalModel, EvalSpec

    spec, base = recipe.eval, recipe.model
    models = []
    for name in spec.models:
        if name == "base":
            models.append(EvalModel(name="base", model=base.name, backend=base.backend,
                                    base_urls=list(base.base_url)))
        else:
            stage = "sft" if name == "sft" else _trained_stage(recipe)
            models.append(EvalModel(name=name, model=str(ctx.output(stage, "model"))))
    judge = recipe.eval.feedback_model or recipe.feedback()
    sets = {k: ctx.output("split", f) for k, f in (("redteam", "eval_redteam"), ("benign", "eval_helpful"))
            if ctx.outputs["split"][f"{f}_count"]}
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
        "lookalike": ctx.output("split", "eval_lookalike") if "eval_lookalike" in ctx.outputs["split"]
        else spec.lookalike, "judge_audit": spec.judge_audit, "refusal_audit": spec.refusal_audit,
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
    trained = _trained_stage(recipe)
    deps = ("split", "sft", trained) if trained != "sft" else ("split", "sft")
    if "rm" in recipe.stage_names():
        deps = (*deps, "rm")

    def fingerprint(ctx: RunContext) -> Any:
        judge = (spec.feedback_model or recipe.feedback()).identity()
        return {"eval": spec.model_dump(mode="json", exclude={"lookalike", "judge_audit", "refusal_audit"}),
                "base": recipe.model.identity(),
                "judge": judge, "constitution": recipe_constitution(recipe).hash,
                "lookalike": file_digest(spec.lookalike) if spec.lookalike else None,
                **{k: file_digest(p) for k, p in (("judge_audit", spec.judge_audit),
                                                  ("refusal_audit", spec.refusal_audit)) if p}}

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
