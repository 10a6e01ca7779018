"""Train one stage of a recipe outside ``cai run`` (e.g. on several machines from SLURM), then go on.

1. ``cai run RECIPE --until label`` runs the stages before it, once;
2. ``cai run RECIPE --train-argv policy`` prints that stage's ``cai train ...`` arguments: the very
   job ``cai run`` would run (:func:`stage_job`), writing its model to ``RUN_DIR/policy/model``, and
   readies that folder for the stage's key (a folder of another key is moved aside, as ``cai run`` does);
3. a launcher of your own runs ``accelerate launch ... -m cai <those arguments>`` on every machine
   (``examples/slurm/``);
4. ``cai run RECIPE --mark-trained policy`` checks that the folder was readied for the same key and
   holds the model card (written last, by the main process), and records the stage as done with the
   card's metrics, in the ``stage.json`` ``cai run`` reads;
5. ``cai run RECIPE`` skips the stage and goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai.core.errors import CaiError
from cai.core.records import utc_now
from cai.run.engine import RunContext, Stage, plan, read_state, ready_dir, write_state
from cai.run.recipe import Recipe
from cai.train.jobs import TrainJob, job_argv

log = logging.getLogger(__name__)

TRAIN_STAGES = ("sft", "rm", "policy")
# the final metrics each stage keeps in its outputs (as its run in cai.run.train_stages does)
STAGE_METRICS = {"sft": ("train_loss", "global_step", "train_runtime"),
                 "rm": ("eval_accuracy", "human_eval_accuracy", "train_loss")}


def ready_context(stages: Sequence[Stage], run_dir: Path, stage: str) -> tuple[RunContext, str]:
    """The context of a training stage whose inputs are all finished (their outputs loaded), and its key."""
    names = [s.name for s in stages]
    trainable = [n for n in names if n in TRAIN_STAGES]
    if stage not in trainable:
        raise CaiError(f"{stage}: not a training stage of this recipe",
                       hint=f"use one of: {', '.join(trainable)}")
    ctx = RunContext(Path(run_dir).resolve())
    results = {r.name: r for r in plan(stages, ctx, stop=stage)}
    deps = next(s for s in stages if s.name == stage).deps
    for dep in deps:
        r = results[dep]
        if r.status != "would skip":
            prev = names[names.index(stage) - 1]
            raise CaiError(f"{stage} needs {dep} finished with its current inputs first ({dep}: {r.status})",
                           hint=f"run `cai run RECIPE --until {prev}` first")
        ctx.outputs[dep] = r.outputs
    key = results[stage].key
    if key is None:
        raise CaiError(f"{stage}: its key is unknown ({results[stage].status})",
                       hint="make the recipe's data readable here first (e.g. cache its hub datasets)")
    return ctx, key


def stage_job(recipe: Recipe, stage: str, ctx: RunContext) -> TrainJob:
    """The job that ``cai run``'s ``stage`` runs, from the finished stages in ``ctx``."""
    from cai.run.train_stages import POLICY_JOBS, check_label_signal, policy_inputs, rm_job, sft_job

    out = str(ctx.dir(stage) / "model")
    sft_model = str(ctx.output("sft", "model")) if "sft" in ctx.outputs else None
    if stage == "sft":
        return sft_job(recipe, str(ctx.output("critique", "sft")), out)
    if stage == "rm":
        spec = recipe.rm
        assert spec is not None
        check_label_signal(ctx, spec.allow_weak_labels, "rm")
        start = sft_model if spec.start_from == "sft" else recipe.model.train_weights()
        return rm_job(recipe, str(ctx.output("label", "preferences")), out, str(start))
    p = recipe.policy
    if p.method == "dpo":
        check_label_signal(ctx, p.allow_weak_labels, "policy")
    data, reward = policy_inputs(ctx, p)
    return POLICY_JOBS[p.method](recipe, data, out, str(sft_model), reward)


def train_argv(recipe: Recipe, stages: Sequence[Stage], run_dir: Path, stage: str) -> list[str]:
    """The ``cai`` arguments that train ``stage`` as ``cai run`` would; readies its folder for its key."""
    ctx, key = ready_context(stages, run_dir, stage)
    job = stage_job(recipe, stage, ctx)
    sdir = ctx.dir(stage)
    state = read_state(sdir)
    if state is not None and state.get("key") == key and state.get("status") == "complete":
        log.warning("%s already finished with these inputs; training again overwrites %s", stage, job.output)
    ready_dir(sdir, key)
    return job_argv(job)


def mark_trained(recipe: Recipe, stages: Sequence[Stage], run_dir: Path, stage: str) -> dict[str, Any]:
    """Record ``stage`` as done from the model its ``--train-argv`` command wrote; return its outputs."""
    ctx, key = ready_context(stages, run_dir, stage)
    sdir = ctx.dir(stage)
    try:
        started = (sdir / "stage.key").read_text(encoding="utf-8").strip()
    except OSError:
        started = None
    if started != key:
        raise CaiError(f"{sdir}: not readied for {stage}'s current key {key} (found {started or 'none'})",
                       hint=f"run `cai run RECIPE --train-argv {stage}`, then its training, then "
                            "--mark-trained")
    card = sdir / "model" / "cai_card.json"
    if not card.is_file():
        raise CaiError(f"{card}: no model card, so the training has not finished (the main process writes it "
                       "last)", hint="run the command --train-argv printed to the end; see its log")
    metrics = json.loads(card.read_text(encoding="utf-8")).get("metrics", {})
    from cai.run.train_stages import POLICY_METRICS

    method = recipe.policy.method
    keep = STAGE_METRICS.get(stage) or POLICY_METRICS[method]
    outputs = {"model": ctx.rel(sdir / "model"), **({"method": method} if stage == "policy" else {}),
               **{k: metrics[k] for k in keep if k in metrics}}
    write_state(sdir, {"stage": stage, "key": key, "status": "complete", "outputs": outputs,
                       "seconds": round(float(metrics.get("train_runtime", 0.0)), 1),
                       "finished_at": utc_now(), "trained": "outside cai run (--mark-trained)"})
    return outputs
