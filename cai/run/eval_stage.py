"""The ``eval`` stage of ``cai run`` and the before/after table.

The held-out prompts of the ``split`` stage (never seen in training) go to
:func:`cai.eval.run.evaluate` with the models the recipe compares (``base``,
``sft``, ``trained``; the first is the baseline), the constitution, the judge,
the preference model (for the reward-hacking probes) and the training curves.
It writes ``eval/eval.json``, ``eval/report.md`` and ``eval/report.html``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cai.core.errors import CaiError
from cai.run.engine import RunContext, Stage, file_digest
from cai.run.recipe import Recipe
from cai.run.stages import constitution, out_path, rel

BEFORE_AFTER = {  # column -> how a value is shown
    "harm": "{:.0%}", "p(harm)": "{:.2f}", "refusal": "{:.0%}", "over-refusal": "{:.0%}",
    "win rate": "{:.0%}", "LC win": "{:.0%}", "chars": "{:.0f}", "boilerplate": "{:.0%}", "KL": "{:.1f}",
}


def _trained_stage(recipe: Recipe) -> str:
    return "policy" if recipe.policy.method != "none" else "sft"


def eval_spec(recipe: Recipe, ctx: RunContext) -> Any:
    """The :class:`cai.eval.spec.EvalSpec` of this run (raises a one-line error for bad ``eval.options``)."""
    from pydantic import ValidationError

    from cai.core.errors import pydantic_error_line
    from cai.eval.spec import EvalModel, EvalSpec

    spec, base = recipe.eval, recipe.model
    models = []
    for name in spec.models:
        if name == "base":
            models.append(EvalModel(name="base", model=base.name, backend=base.backend, base_urls=list(base.base_url)))
        else:
            stage = "sft" if name == "sft" else _trained_stage(recipe)
            models.append(EvalModel(name=name, model=str(out_path(ctx, stage, "model"))))
    judge = recipe.eval.feedback_model or recipe.feedback()
    sets = {k: out_path(ctx, "split", f) for k, f in (("redteam", "eval_redteam"), ("benign", "eval_helpful"))
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
        "lookalike": spec.lookalike,
        "preference_model": out_path(ctx, "rm", "model") if "rm" in ctx.outputs else None,
    }
    try:
        return EvalSpec.model_validate({**data, **spec.options})
    except ValidationError as exc:
        raise CaiError(pydantic_error_line(exc, "eval"), hint="check eval.options in the recipe") from None


def _rate(interval: Any) -> float | None:
    return None if interval is None else interval.rate


def before_after(summary: Any) -> list[dict[str, Any]]:
    """One row per model: what changed, in the columns of :data:`BEFORE_AFTER`.

    harm = judged harmful compliance on red-team prompts (p(harm) its mean judge
    probability), refusal = red-team answers refused, over-refusal = safe look-alikes
    refused, win rate / LC win = against the first model (raw / length-controlled),
    chars = mean answer length, boilerplate = share of answers repeating a phrase
    common to many, KL = nats per answer from the first model.
    """
    rows = []
    for m in summary.models:
        harm, hack, helpful = m.harm, m.hacking, m.helpfulness
        rows.append({
            "model": m.name,
            "harm": _rate(harm.harmful) if harm else None,
            "p(harm)": harm.mean_p_harmful if harm else None,
            "refusal": _rate(harm.refusal) if harm else None,
            "over-refusal": _rate(m.over_refusal.safe_refusal) if m.over_refusal else None,
            "win rate": _rate(helpful.win_rate) if helpful else None,
            "LC win": helpful.lc_win_rate if helpful else None,
            "chars": m.mean_answer_chars,
            "boilerplate": hack.boilerplate_rate if hack else None,
            "KL": hack.kl_from_reference if hack else None,
        })
    return rows


def before_after_rows(run_dir: Path, outputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The before/after rows of a finished eval stage, read from its ``eval.json`` (none if it is gone)."""
    from cai.eval.schema import EvalSummary

    try:
        summary = EvalSummary.model_validate_json((run_dir / outputs["eval"]).read_text(encoding="utf-8"))
    except (KeyError, OSError, ValueError):
        return []
    return before_after(summary)


def format_before_after(rows: list[Mapping[str, Any]]) -> str:
    """The before/after table as aligned text (``-`` where a figure was not measured).

    >>> print(format_before_after([{"model": "base", "harm": 0.5, "p(harm)": 0.456, "refusal": 0.25,
    ...                             "win rate": 0.5, "chars": 412.4, "KL": 8.04}]))
    model  harm  p(harm)  refusal  over-refusal  win rate  LC win  chars  boilerplate  KL
    base   50%   0.46     25%      -             50%       -       412    -            8.0
    """
    head = ["model", *BEFORE_AFTER]
    cells = [[str(r["model"]), *("-" if r.get(k) is None else f.format(r[k]) for k, f in BEFORE_AFTER.items())]
             for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *cells)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head, *cells])


def eval_stage(recipe: Recipe) -> Stage:
    spec = recipe.eval
    trained = _trained_stage(recipe)
    deps = ("split", "sft", trained) if trained != "sft" else ("split", "sft")
    if "rm" in recipe.stage_names():
        deps = (*deps, "rm")

    def fingerprint(ctx: RunContext) -> Any:
        judge = (spec.feedback_model or recipe.feedback()).identity()
        return {"eval": spec.model_dump(mode="json", exclude={"lookalike"}), "base": recipe.model.identity(),
                "judge": judge, "constitution": constitution(recipe).hash,
                "lookalike": file_digest(spec.lookalike) if spec.lookalike else None}

    def run(ctx: RunContext) -> dict[str, Any]:
        try:
            from cai.eval.run import evaluate
        except ImportError:
            raise CaiError("the eval stage needs cai.eval.run, which this installation lacks",
                           hint="set eval.enabled: false in the recipe, or update cai") from None
        out = ctx.dir("eval")
        evaluate(eval_spec(recipe, ctx), out)
        return {"eval": rel(ctx, out / "eval.json"), "report": rel(ctx, out / "report.html"),
                "report_md": rel(ctx, out / "report.md")}

    return Stage("eval", deps, fingerprint, run)
