"""The training stages of ``cai run``: ``sft``, ``rm`` and ``policy`` (dpo, ppo, rloo, grpo).

Each turns its recipe section into a :class:`~cai.train.jobs.TrainJob`, the same
object ``cai train METHOD`` builds from its options, and runs it in this process
or, with ``train.accelerate_config``, as that very command under ``accelerate
launch`` (:func:`~cai.train.jobs.run_or_launch`: both ways come from one job, so
they cannot disagree). Every model goes to ``<stage>/model/`` with its model card;
the stage's outputs carry the final metrics.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cai.core.errors import CaiError
from cai.run.engine import RunContext, Stage, file_digest
from cai.run.recipe import PolicySpec, Recipe, TrainSpec, recipe_constitution, round_stage
from cai.train.jobs import TrainJob

if TYPE_CHECKING:
    from cai.train.common.models import ModelOptions


def model_options(recipe: Recipe, spec: TrainSpec) -> ModelOptions:
    """The :class:`~cai.train.common.models.ModelOptions` of a training section (dtype: its own, else the
    model's)."""
    from cai.train.common.models import LoraOptions, ModelOptions

    lo = spec.lora
    lora = None if lo is None else LoraOptions(r=lo.r, alpha=lo.alpha, dropout=lo.dropout,
                                               target_modules=tuple(lo.target_modules)
                                               if lo.target_modules else None)
    m = recipe.model
    return ModelOptions(lora=lora, dtype=spec.dtype or m.dtype, trust_remote_code=m.trust_remote_code,
                        chat_template=m.chat_template)


def sft_job(recipe: Recipe, data: str, output: str) -> TrainJob:
    spec = recipe.sft
    return TrainJob("sft", (data,), output, model=recipe.model.train_weights(), settings=spec.train.options(),
                    options=model_options(recipe, spec.train), args={"eval_fraction": spec.eval_fraction})


def rm_job(recipe: Recipe, data: str, output: str, start: str) -> TrainJob:
    spec = recipe.rm
    assert spec is not None
    args = {"pad_token": spec.pad_token, "margin": spec.margin, "eval_fraction": spec.eval_fraction,
            "human_eval": str(spec.human_eval) if spec.human_eval else None}
    return TrainJob("rm", (data,), output, model=start, settings=spec.train.options(),
                    options=model_options(recipe, spec.train), args=args)


def dpo_job(recipe: Recipe, data: tuple[str, ...], output: str, start: str, reward: str | None) -> TrainJob:
    p = recipe.policy
    settings = {**p.train.options(), **({"beta": p.beta} if p.beta is not None else {}),
                **({"loss_type": p.loss_type} if p.loss_type else {})}
    return TrainJob("dpo", data, output, model=start, settings=settings,
                    options=model_options(recipe, p.train),
                    args={"ref_model": p.ref_model, "soft_labels": p.soft_labels,
                          "eval_fraction": p.eval_fraction})


def ppo_job(recipe: Recipe, data: tuple[str, ...], output: str, start: str, reward: str | None) -> TrainJob:
    p = recipe.policy
    args = {"reward": reward, "constitution": recipe.constitution if p.system_prompt else None,
            "judge_question": p.judge_question, "reward_batch_size": p.reward_batch_size}
    return TrainJob("ppo", data, output, model=start, settings=p.train.options(),
                    options=model_options(recipe, p.train), args=args)


def rl_job(recipe: Recipe, data: tuple[str, ...], output: str, start: str, reward: str | None) -> TrainJob:
    p = recipe.policy
    settings = {**p.train.options(), **({"beta": p.beta} if p.beta is not None else {})}
    args = {"reward": [reward], "judge_question": p.judge_question, "reward_batch_size": p.reward_batch_size}
    return TrainJob(p.method, data, output, model=start, settings=settings,
                    options=model_options(recipe, p.train), args=args)


def adapter_job(recipe: Recipe, name: str, data: str, output: str, core: str) -> tuple[Any, Any]:
    """``(TrainJob, TrainSpec)`` of region ``name``'s adapter: LoRA on ``core``, DPO on the preference file
    ``data`` (reference: the core, i.e. the adapter off) or SFT on the SFT file ``data``."""
    spec = recipe.adapter_for(name)
    train = spec.train.model_copy(update={"lora": spec.lora})
    settings = train.options()
    if spec.method == "dpo":
        settings = {**settings, **({"beta": spec.beta} if spec.beta is not None else {})}
        args: dict[str, Any] = {"ref_model": None, "soft_labels": False, "eval_fraction": 0.0}
    else:
        args = {"eval_fraction": 0.0}
    job = TrainJob(spec.method, (data,), output, model=core, settings=settings,
                   options=model_options(recipe, train), args=args)
    return job, train


POLICY_JOBS: dict[str, Callable[[Recipe, tuple[str, ...], str, str, str | None], TrainJob]] = {
    "dpo": dpo_job, "ppo": ppo_job, "rloo": rl_job, "grpo": rl_job,
}


def run_train(ctx: RunContext, job: TrainJob, spec: TrainSpec, *keys: str) -> dict[str, Any]:
    """Run the job; keep the named final metrics. Inference servers the run started stop first: training
    needs the accelerators they hold (a later sampling stage starts the one it needs)."""
    from cai.run.engines import close_engines
    from cai.train.jobs import run_or_launch

    close_engines(ctx)

    metrics = run_or_launch(job, spec.accelerate_config, spec.num_processes)
    return {k: metrics[k] for k in keys if k in metrics}


def check_label_signal(ctx: RunContext, allow: bool, stage: str, label: str = "label") -> None:
    """Refuse to train on AI labels that carry no signal (the ``label`` stage measured it), unless allowed.

    Human labels merged into the preferences are a way out: with some, training goes on.
    """
    import json
    import logging

    stats_file = ctx.dir(label) / "stats.json"
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    signal = stats.get("signal") or {}
    if signal.get("signal", True):
        return
    why = "; ".join(signal.get("reasons", [])) or "see the label stats"
    humans = stats.get("preferences", {}).get("human", 0)
    if humans or allow:
        logging.getLogger(__name__).warning("%s: the AI labels carry no signal (%s); training anyway (%s)",
                                            stage, why,
                                            f"{humans} human pair(s) in the mix" if humans else "allowed")
        return
    raise CaiError(f"{stage}: the AI labels carry no signal ({why}; {stats_file}): training on them "
                   f"would fit noise",
                   hint=f"use a larger feedback model (label.feedback_model), add human labels "
                        f"(label.human), or set {stage}.allow_weak_labels: true")


def sft_stage(recipe: Recipe) -> Stage:
    spec, model = recipe.sft, recipe.model

    def fingerprint(ctx: RunContext) -> Any:
        return {"sft": spec.model_dump(mode="json"), "weights": model.train_weights(),
                "model": model.identity()}

    def run(ctx: RunContext) -> dict[str, Any]:
        out = ctx.dir("sft") / "model"
        job = sft_job(recipe, str(ctx.output("critique", "sft")), str(out))
        return {"model": ctx.rel(out),
                **run_train(ctx, job, spec.train, "train_loss", "global_step", "train_runtime")}

    return Stage("sft", ("critique",), fingerprint, run)


def _start(ctx: RunContext, recipe: Recipe, start_from: str) -> str:
    return str(ctx.output("sft", "model")) if start_from == "sft" else recipe.model.train_weights()


def rm_stage(recipe: Recipe) -> Stage:
    spec, model = recipe.rm, recipe.model
    assert spec is not None
    deps = ("label", "sft") if spec.start_from == "sft" else ("label",)

    def fingerprint(ctx: RunContext) -> Any:
        return {"rm": spec.model_dump(mode="json", exclude={"human_eval"}), "weights": model.train_weights(),
                "human_eval": file_digest(spec.human_eval) if spec.human_eval else None}

    def run(ctx: RunContext) -> dict[str, Any]:
        check_label_signal(ctx, spec.allow_weak_labels, "rm")
        out = ctx.dir("rm") / "model"
        job = rm_job(recipe, str(ctx.output("label", "preferences")), str(out),
                     _start(ctx, recipe, spec.start_from))
        return {"model": ctx.rel(out),
                **run_train(ctx, job, spec.train, "eval_accuracy", "human_eval_accuracy", "train_loss")}

    return Stage("rm", deps, fingerprint, run)


POLICY_METRICS = {"dpo": ("train_loss", "rewards/accuracies", "rewards/margins", "global_step"),
                  "ppo": ("reward", "kl", "global_step"), "rloo": ("reward", "train_loss", "global_step"),
                  "grpo": ("reward", "train_loss", "global_step")}


def policy_inputs(ctx: RunContext, spec: PolicySpec,
                  label: str = "label") -> tuple[tuple[str, ...], str | None]:
    """``(data, reward)``: the preference file (of the ``label`` stage) for DPO; the train prompts and the
    reward spec for online RL."""
    if spec.method == "dpo":
        return (str(ctx.output(label, "preferences")),), None
    prompts = tuple(str(ctx.output("split", f)) for f in ("train_redteam", "train_helpful")
                    if ctx.outputs["split"][f"{f}_count"])
    return prompts, f"rm:{ctx.output('rm', 'model')}" if spec.reward == "rm" else spec.reward


def policy_stage(recipe: Recipe, r: int = 1) -> Stage:
    """The policy of round ``r``: round 1 starts from the SFT model; a later round (DPO only) starts from
    the previous round's policy, on its own round's labels, with ``policy.reference`` as the reference."""
    spec, name, label = recipe.policy, round_stage("policy", r), round_stage("label", r)
    online = spec.method in ("ppo", "rloo", "grpo")
    start = "sft" if r == 1 else round_stage("policy", r - 1)
    deps = (("split", "sft", *(("rm",) if spec.reward == "rm" else ())) if online
            else (label, "sft", *((start,) if r > 1 else ())))

    def fingerprint(ctx: RunContext) -> Any:
        const = recipe_constitution(recipe).hash if online and spec.system_prompt else None
        return {"policy": spec.model_dump(mode="json", exclude=set() if r > 1 else {"reference"}),
                "constitution": const, **({"round": r} if r > 1 else {})}

    def run(ctx: RunContext) -> dict[str, Any]:
        from dataclasses import replace

        if spec.method == "dpo":
            check_label_signal(ctx, spec.allow_weak_labels, name, label)
        out = ctx.dir(name) / "model"
        data, reward = policy_inputs(ctx, spec, label)
        job = POLICY_JOBS[spec.method](recipe, data, str(out), str(ctx.output(start, "model")), reward)
        if r > 1:  # "previous": a frozen copy of the start (last round's policy); "initial": the SFT model
            ref = str(ctx.output("sft", "model")) if spec.reference == "initial" else None
            job = replace(job, args={**job.args, "ref_model": ref})
        return {"model": ctx.rel(out), "method": spec.method, "round": r,
                **run_train(ctx, job, spec.train, *POLICY_METRICS[spec.method])}

    return Stage(name, deps, fingerprint, run)


def check_trainer_configs(recipe: Recipe, hardware: bool = True) -> None:
    """Build every training stage's trainer config now, so a bad ``train.config`` key fails before any
    work.

    ``hardware`` False (``cai run --dry-run``): keys, values and accelerate config files are checked, not
    whether this machine has the GPUs they ask for (:func:`~cai.train.common.config.without_hardware`);
    True (a real run): a ``bf16: true`` or a ``zero3`` stage on a machine without such GPUs fails here,
    in one line, before the first stage starts.
    """
    import contextlib

    from cai.train.common.config import without_hardware
    from cai.train.jobs import trainer_config

    with tempfile.TemporaryDirectory(prefix="cai-check-") as tmp:
        jobs = [("sft", sft_job(recipe, "data.jsonl", tmp), recipe.sft.train)]
        if recipe.rm is not None:
            jobs.append(("rm", rm_job(recipe, "data.jsonl", tmp, "model"), recipe.rm.train))
        if recipe.policy.method in POLICY_JOBS:
            jobs.append(("policy",
                         POLICY_JOBS[recipe.policy.method](recipe, ("data.jsonl",), tmp, "model", "rm:x"),
                         recipe.policy.train))
        if recipe.regions:  # each region's adapter (cai.run.regions)
            jobs += [(f"regions.{r}.adapter", *adapter_job(recipe, r, "data.jsonl", tmp, "model"))
                     for r in recipe.regions]
        for stage, job, spec in jobs:
            try:
                with contextlib.nullcontext() if hardware else without_hardware():
                    cfg = trainer_config(job)
                _check_launch(spec, hardware)
                if job.method in ("rloo", "grpo"):
                    from cai.train.rl import check_vllm_settings

                    check_vllm_settings(cfg)
            except CaiError as exc:
                raise CaiError(f"{stage}.train: {exc.message.replace('option ', '', 1)}",
                               hint=exc.hint) from None
            if job.method == "dpo" and job.args.get("soft_labels"):
                from cai.train.dpo import check_soft_label_config

                try:
                    check_soft_label_config(cfg)
                except CaiError as exc:
                    raise CaiError(f"policy: {exc.message.replace('--soft-labels', 'soft_labels: true')}",
                                   hint="set policy.soft_labels: false, or drop those settings") from None


def _check_launch(spec: TrainSpec, hardware: bool) -> None:
    """A stage's ``accelerate_config``: readable always; runnable here (GPUs, DeepSpeed) when ``hardware``."""
    if not spec.accelerate_config:
        return
    from cai.train.common import launch

    try:
        if hardware:
            launch.resolve_config(spec.accelerate_config, spec.num_processes, launch.gpu_count())
        else:
            launch.read_config(launch.profile_path(spec.accelerate_config))
    except CaiError as exc:
        raise CaiError(f"accelerate_config {spec.accelerate_config}: {exc.message}", hint=exc.hint) from None
