"""Training stages of ``cai run``: ``sft``, ``rm`` and ``policy`` (dpo, ppo, rloo, grpo).

Each calls the same library function as its ``cai train ...`` command, in this
process; with ``train.accelerate_config`` it runs that command instead through
``accelerate launch`` (:func:`cai.train.common.launch.relaunch`), the recipe's options
passed as ``--set KEY=VALUE``. Every model goes to ``<stage>/model/`` with its
model card; the stage's outputs carry the final metrics.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cai.core.errors import CaiError
from cai.run.engine import RunContext, Stage
from cai.run.recipe import Recipe, TrainSpec
from cai.run.stages import constitution, out_path, rel

log = logging.getLogger(__name__)


def launch_args(spec: TrainSpec, options: dict[str, Any]) -> list[str]:
    """The ``cai train`` arguments that carry a recipe's trainer options and LoRA settings.

    >>> launch_args(TrainSpec(lora={"r": 8}, dtype="bfloat16"), {"max_steps": 3, "report_to": "none"})
    ['--set', 'max_steps=3', '--set', 'report_to="none"', '--lora', '--lora-r', '8', '--lora-alpha', '32', '--lora-dropout', '0.05', '--dtype', 'bfloat16']
    """
    args: list[str] = []
    for k, v in options.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    if spec.lora is not None:
        args += ["--lora", "--lora-r", str(spec.lora.r), "--lora-alpha", str(spec.lora.alpha),
                 "--lora-dropout", str(spec.lora.dropout)]
        for t in spec.lora.target_modules or []:
            args += ["--lora-target", t]
    if spec.dtype:
        args += ["--dtype", spec.dtype]
    return args


def lora_of(spec: TrainSpec) -> Any:
    if spec.lora is None:
        return None
    from cai.train.common.models import LoraOptions

    lo = spec.lora
    return LoraOptions(r=lo.r, alpha=lo.alpha, dropout=lo.dropout,
                       target_modules=tuple(lo.target_modules) if lo.target_modules else None)


def trainer_config(config_cls: type, out: Path, options: dict[str, Any]) -> Any:
    from cai.cli.train_options import make_config

    return make_config(config_cls, out, None, None, options)


def _release() -> None:
    """Free what a trainer left: the accelerate state (a later trainer builds its own) and cached memory."""
    import sys

    if "accelerate.state" in sys.modules:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def train(kind: str, spec: TrainSpec, out: Path, argv: list[str], options: dict[str, Any],
          in_process: Callable[[], Any]) -> dict[str, Any]:
    """Run one trainer (in this process, or through accelerate) and return its final metrics."""
    if spec.accelerate_config:
        from cai.train.common.launch import relaunch

        code = relaunch(spec.accelerate_config, spec.num_processes,
                        ["train", kind, *argv, "--output", str(out), *launch_args(spec, options)])
        if code != 0:
            raise CaiError(f"cai train {kind} through accelerate exited with code {code}",
                           hint=f"see its log above; the partial output is in {out}")
        card = out / "cai_card.json"
        return json.loads(card.read_text(encoding="utf-8")).get("metrics", {}) if card.exists() else {}
    try:
        result = in_process()
    finally:
        _release()
    return dict(result.metrics)


def _metrics(metrics: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: metrics[k] for k in keys if k in metrics}


def sft_stage(recipe: Recipe) -> Stage:
    spec, model = recipe.sft, recipe.model

    def fingerprint(ctx: RunContext) -> Any:
        return {"sft": spec.model_dump(mode="json"), "weights": model.train_weights(), "model": model.identity()}

    def run(ctx: RunContext) -> dict[str, Any]:
        out, data = ctx.dir("sft") / "model", out_path(ctx, "critique", "sft")
        options = spec.train.options()

        def go():
            from trl import SFTConfig

            from cai.train.sft import train_sft

            return train_sft(data, output_dir=out, model=model.train_weights(),
                             config=trainer_config(SFTConfig, out, options), lora=lora_of(spec.train),
                             eval_fraction=spec.eval_fraction, dtype=spec.train.dtype or model.dtype,
                             trust_remote_code=model.trust_remote_code, chat_template=model.chat_template)

        argv = ["--data", str(data), "--model", model.train_weights(), "--eval-fraction", str(spec.eval_fraction)]
        metrics = train("sft", spec.train, out, argv, options, go)
        return {"model": rel(ctx, out), **_metrics(metrics, "train_loss", "global_step", "train_runtime")}

    return Stage("sft", ("critique",), fingerprint, run)


def _start(ctx: RunContext, recipe: Recipe, start_from: str) -> str:
    return str(out_path(ctx, "sft", "model")) if start_from == "sft" else recipe.model.train_weights()


def rm_stage(recipe: Recipe) -> Stage:
    spec, model = recipe.rm, recipe.model
    assert spec is not None
    deps = ("label", "sft") if spec.start_from == "sft" else ("label",)

    def fingerprint(ctx: RunContext) -> Any:
        from cai.run.engine import file_digest

        return {"rm": spec.model_dump(mode="json", exclude={"human_eval"}), "weights": model.train_weights(),
                "human_eval": file_digest(spec.human_eval) if spec.human_eval else None}

    def run(ctx: RunContext) -> dict[str, Any]:
        out, data, start = ctx.dir("rm") / "model", out_path(ctx, "label", "preferences"), _start(ctx, recipe, spec.start_from)
        options = spec.train.options()

        def go():
            from trl import RewardConfig

            from cai.train.reward_model import train_reward_model

            return train_reward_model(data, output_dir=out, model=start,
                                      config=trainer_config(RewardConfig, out, options), lora=lora_of(spec.train),
                                      pad_token=spec.pad_token, margin=spec.margin, eval_fraction=spec.eval_fraction,
                                      human_eval=spec.human_eval, dtype=spec.train.dtype or model.dtype,
                                      trust_remote_code=model.trust_remote_code, chat_template=model.chat_template)

        argv = ["--data", str(data), "--model", start, "--eval-fraction", str(spec.eval_fraction)]
        argv += ["--pad-token", spec.pad_token] if spec.pad_token else []
        argv += ["--margin", str(spec.margin)] if spec.margin is not None else []
        argv += ["--human-eval", str(spec.human_eval)] if spec.human_eval else []
        metrics = train("rm", spec.train, out, argv, options, go)
        return {"model": rel(ctx, out), **_metrics(metrics, "eval_accuracy", "human_eval_accuracy", "train_loss")}

    return Stage("rm", deps, fingerprint, run)


def policy_stage(recipe: Recipe) -> Stage:
    spec, model = recipe.policy, recipe.model
    online = spec.method in ("ppo", "rloo", "grpo")
    deps = ("split", "sft", *(("rm",) if online and spec.reward == "rm" else ())) if online else ("label", "sft")

    def fingerprint(ctx: RunContext) -> Any:
        const = constitution(recipe).hash if online and spec.system_prompt else None
        return {"policy": spec.model_dump(mode="json"), "constitution": const}

    def run(ctx: RunContext) -> dict[str, Any]:
        out, start = ctx.dir("policy") / "model", str(out_path(ctx, "sft", "model"))
        if spec.method == "dpo":
            return {"model": rel(ctx, out), "method": "dpo", **_dpo(ctx, out, start)}
        prompts = [str(out_path(ctx, "split", f)) for f in ("train_redteam", "train_helpful")
                   if ctx.outputs["split"][f"{f}_count"]]
        reward = f"rm:{out_path(ctx, 'rm', 'model')}" if spec.reward == "rm" else spec.reward
        metrics = _ppo(out, start, prompts, reward) if spec.method == "ppo" else _rl(out, start, prompts, reward)
        return {"model": rel(ctx, out), "method": spec.method, **metrics}

    def _dpo(ctx: RunContext, out: Path, start: str) -> dict[str, Any]:
        data = out_path(ctx, "label", "preferences")
        options = {**spec.train.options(), **({"beta": spec.beta} if spec.beta is not None else {}),
                   **({"loss_type": spec.loss_type} if spec.loss_type else {})}

        def go():
            from trl import DPOConfig

            from cai.train.dpo import train_dpo

            return train_dpo(data, output_dir=out, model=start, ref_model=spec.ref_model,
                             config=trainer_config(DPOConfig, out, options), lora=lora_of(spec.train),
                             soft_labels=spec.soft_labels, eval_fraction=spec.eval_fraction,
                             dtype=spec.train.dtype or model.dtype, trust_remote_code=model.trust_remote_code,
                             chat_template=model.chat_template)

        argv = ["--data", str(data), "--model", start, "--eval-fraction", str(spec.eval_fraction)]
        argv += ["--ref-model", spec.ref_model] if spec.ref_model else []
        argv += ["--soft-labels"] if spec.soft_labels else []
        metrics = train("dpo", spec.train, out, argv, options, go)
        return _metrics(metrics, "train_loss", "rewards/accuracies", "rewards/margins", "global_step")

    def _ppo(out: Path, start: str, prompts: list[str], reward: str) -> dict[str, Any]:
        options = spec.train.options()
        system = (constitution(recipe).system_prompt or None) if spec.system_prompt else None

        def go():
            from cai.train.ppo.config import PPOConfig
            from cai.train.ppo.run import train_ppo
            from cai.train.rewards import DEFAULT_JUDGE_QUESTION

            return train_ppo(prompts, reward=reward, output_dir=out, model=start,
                             config=trainer_config(PPOConfig, out, options), lora=lora_of(spec.train),
                             system_prompt=system, constitution=constitution(recipe).ref() if system else None,
                             dtype=spec.train.dtype, trust_remote_code=model.trust_remote_code,
                             chat_template=model.chat_template,
                             reward_options={"batch_size": spec.reward_batch_size,
                                             "judge_question": spec.judge_question or DEFAULT_JUDGE_QUESTION,
                                             "judge_output": "prob", "judge_backend": None})

        argv = [a for p in prompts for a in ("--prompts", p)] + ["--reward", reward, "--model", start,
                                                                 "--reward-batch-size", str(spec.reward_batch_size)]
        argv += ["--judge-question", spec.judge_question] if spec.judge_question else []
        return _metrics(train("ppo", spec.train, out, argv, options, go), "reward", "kl", "global_step")

    def _rl(out: Path, start: str, prompts: list[str], reward: str) -> dict[str, Any]:
        options = {**spec.train.options(), **({"beta": spec.beta} if spec.beta is not None else {})}

        def go():
            from cai.train.rl import _classes, train_rl

            return train_rl(spec.method, prompts, rewards=[reward], output_dir=out, model=start,
                            config=trainer_config(_classes(spec.method)[0], out, options), lora=lora_of(spec.train),
                            judge_question=spec.judge_question, reward_batch_size=spec.reward_batch_size,
                            dtype=spec.train.dtype, trust_remote_code=model.trust_remote_code,
                            chat_template=model.chat_template)

        argv = [a for p in prompts for a in ("--prompts", p)] + ["--reward", reward, "--model", start,
                                                                 "--reward-batch-size", str(spec.reward_batch_size)]
        argv += ["--judge-question", spec.judge_question] if spec.judge_question else []
        return _metrics(train(spec.method, spec.train, out, argv, options, go), "reward", "train_loss", "global_step")

    return Stage("policy", deps, fingerprint, run)


def check_trainer_configs(recipe: Recipe) -> None:
    """Build every training stage's trainer config now, so a bad ``train.config`` key fails before any work."""
    import tempfile

    from cai.train.common.config import build_config, training_defaults

    def classes() -> list[tuple[str, type, dict[str, Any]]]:
        from trl import DPOConfig, RewardConfig, SFTConfig

        out = [("sft", SFTConfig, recipe.sft.train.options())]
        if recipe.rm is not None:
            out.append(("rm", RewardConfig, recipe.rm.train.options()))
        p = recipe.policy
        extra = {**({"beta": p.beta} if p.beta is not None and p.method != "ppo" else {}),
                 **({"loss_type": p.loss_type} if p.loss_type and p.method == "dpo" else {})}
        if p.method == "dpo":
            out.append(("policy", DPOConfig, {**p.train.options(), **extra}))
        elif p.method == "ppo":
            from cai.train.ppo.config import PPOConfig

            out.append(("policy", PPOConfig, p.train.options()))
        elif p.method in ("rloo", "grpo"):
            from cai.train.rl import _classes

            out.append(("policy", _classes(p.method)[0], {**p.train.options(), **extra}))
        return out

    with tempfile.TemporaryDirectory(prefix="cai-check-") as tmp:
        for stage, cls, options in classes():
            try:
                cfg = build_config(cls, options={**options, "output_dir": tmp}, defaults=training_defaults(cls, tmp))
            except CaiError as exc:
                raise CaiError(f"{stage}.train: {exc.message.replace('option ', '', 1)}", hint=exc.hint) from None
            if stage == "policy" and recipe.policy.method == "dpo" and recipe.policy.soft_labels:
                from cai.train.dpo import check_soft_label_config

                try:
                    check_soft_label_config(cfg)
                except CaiError as exc:
                    raise CaiError(f"policy: {exc.message.replace('--soft-labels', 'soft_labels: true')}",
                                   hint="set policy.soft_labels: false, or drop those settings") from None
