"""A training job: what ``cai train METHOD`` and ``cai run``'s training stages both run.

A :class:`TrainJob` holds everything one trainer run needs: the method, the data
(or prompt) files, the model to start from, the output folder, the trainer's
config keys, the :class:`~cai.train.common.models.ModelOptions` and the method's
own arguments, each of which is one option of ``cai train METHOD`` (``pad_token``
is ``--pad-token``). Two ways to run it, derived from the same job so they cannot
drift:

* :func:`run_job`: in this process (one small function per method);
* :func:`job_argv`: the ``cai train ...`` command line that makes the same call,
  which ``cai run`` hands to ``accelerate launch`` (:func:`run_or_launch`).

>>> job = TrainJob("dpo", ("prefs.jsonl",), "out", model="sft", settings={"beta": 0.1},
...                args={"soft_labels": True, "ref_model": None, "eval_fraction": 0.0})
>>> job_argv(job)  # doctest: +NORMALIZE_WHITESPACE
['train', 'dpo', '--data', 'prefs.jsonl', '--model', 'sft', '--output', 'out', '--soft-labels',
'--eval-fraction', '0.0', '--set', 'beta=0.1']
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.core.errors import CaiError
from cai.train.common.models import ModelOptions
from cai.train.common.runner import TrainResult

log = logging.getLogger(__name__)

METHODS = ("sft", "rm", "dpo", "ppo", "rloo", "grpo")
ONLINE = ("ppo", "rloo", "grpo")


@dataclass(frozen=True)
class TrainJob:
    """One trainer run (see the module doc). ``data`` are ``--data`` files, or ``--prompts`` for online RL."""

    method: str
    data: tuple[str, ...]
    output: str
    model: str = "default"
    settings: Mapping[str, Any] = field(default_factory=dict)  # trainer config keys (TRL's names)
    config_file: str | None = None  # --config
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE, over everything else
    options: ModelOptions = ModelOptions()
    args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CaiError(f"unknown training method {self.method!r}",
                           hint=f"use one of: {', '.join(METHODS)}")


def config_class(method: str) -> type:
    """The trainer config class of a method (TRL's, or cai's ``PPOConfig``)."""
    if method == "ppo":
        from cai.train.ppo.config import PPOConfig

        return PPOConfig
    if method in ("rloo", "grpo"):
        from cai.train.rl import rl_classes

        return rl_classes(method)[0]
    from trl import DPOConfig, RewardConfig, SFTConfig

    return {"sft": SFTConfig, "rm": RewardConfig, "dpo": DPOConfig}[method]


def trainer_config(job: TrainJob) -> Any:
    """The job's trainer config: cai defaults < ``--config`` < settings < ``--set``; ``output_dir`` =
    output."""
    from cai.train.common.config import build_config, training_defaults

    cls = config_class(job.method)
    return build_config(cls, config_file=job.config_file, overrides=job.overrides,
                        options={**job.settings, "output_dir": str(job.output)},
                        defaults=training_defaults(cls, job.output))


# ----------------------------------------------------------------------------- in this process


def _sft(job: TrainJob, cfg: Any) -> TrainResult:
    from cai.train.sft import train_sft

    return train_sft(list(job.data), output_dir=job.output, model=job.model, config=cfg, options=job.options,
                     **job.args)


def _rm(job: TrainJob, cfg: Any) -> TrainResult:
    from cai.train.reward_model import train_reward_model

    return train_reward_model(list(job.data), output_dir=job.output, model=job.model, config=cfg,
                              options=job.options, **job.args)


def _dpo(job: TrainJob, cfg: Any) -> TrainResult:
    from cai.train.dpo import train_dpo

    return train_dpo(list(job.data), output_dir=job.output, model=job.model, config=cfg, options=job.options,
                     **job.args)


def _ppo(job: TrainJob, cfg: Any) -> TrainResult:
    from cai.train.ppo.run import train_ppo
    from cai.train.rewards import DEFAULT_JUDGE_QUESTION, parse_reward_spec

    a = dict(job.args)
    reward = a.pop("reward")
    parse_reward_spec(reward)
    ref, system = None, a.pop("system_prompt", None)
    constitution = a.pop("constitution", None)
    if constitution is not None:
        from cai.constitution.load import load_constitution

        const = load_constitution(constitution)
        ref, system = const.ref(), system or const.system_prompt or None
    judge_output = a.pop("judge_output", "prob")
    if judge_output not in ("prob", "logodds"):
        raise CaiError(f"--judge-output {judge_output!r} is not prob or logodds", hint="use prob or logodds")
    judge_backend, judge_urls = a.pop("judge_backend", "hf"), a.pop("judge_base_url", None)
    judge = None
    if reward.startswith("judge:") and (judge_backend != "hf" or judge_urls):
        from cai.backends.spec import spec_from_options

        judge = spec_from_options(judge_backend, reward.partition(":")[2], prefix="judge-",
                                  base_url=judge_urls).build()
    options = {"batch_size": a.pop("reward_batch_size", 8),
               "judge_question": a.pop("judge_question", None) or DEFAULT_JUDGE_QUESTION,
               "judge_output": judge_output, "judge_backend": judge}
    if a:
        raise CaiError(f"ppo: unknown argument(s) {', '.join(sorted(a))}")
    return train_ppo(list(job.data), reward=reward, output_dir=job.output, model=job.model, config=cfg,
                     options=job.options, system_prompt=system, constitution=ref, reward_options=options)


def _rl(job: TrainJob, cfg: Any) -> TrainResult:
    from cai.train.rl import train_rl

    a = dict(job.args)
    return train_rl(job.method, list(job.data), rewards=list(a.pop("reward")), output_dir=job.output,
                    model=job.model, config=cfg, options=job.options, **a)


RUNNERS: dict[str, Callable[[TrainJob, Any], TrainResult]] = {
    "sft": _sft, "rm": _rm, "dpo": _dpo, "ppo": _ppo, "rloo": _rl, "grpo": _rl,
}


def run_job(job: TrainJob) -> TrainResult:
    """Run the job in this process."""
    return RUNNERS[job.method](job, trainer_config(job))


# ----------------------------------------------------------------------------- as a command line


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def arg_flags(args: Mapping[str, Any]) -> list[str]:
    """Method arguments as ``cai train`` options: ``None`` and ``False`` left out, ``True`` a bare flag,
    a list one option per item.

    >>> arg_flags({"pad_token": "<pad>", "margin": None, "soft_labels": True, "reward": ["rm:a", "rm:b"]})
    ['--pad-token', '<pad>', '--soft-labels', '--reward', 'rm:a', '--reward', 'rm:b']
    """
    out: list[str] = []
    for k, v in args.items():
        if v is None or v is False:
            continue
        if v is True:
            out.append(_flag(k))
        elif isinstance(v, (list, tuple)):
            for item in v:
                out += [_flag(k), str(item)]
        else:
            out += [_flag(k), str(v)]
    return out


def option_flags(options: ModelOptions) -> list[str]:
    """The :class:`ModelOptions` as ``cai train`` options.

    >>> from cai.train.common.models import LoraOptions
    >>> option_flags(ModelOptions(lora=LoraOptions(r=8), dtype="bfloat16"))
    ['--lora', '--lora-r', '8', '--lora-alpha', '32', '--lora-dropout', '0.05', '--dtype', 'bfloat16']
    """
    out: list[str] = []
    if options.lora is not None:
        lo = options.lora
        out += ["--lora", "--lora-r", str(lo.r), "--lora-alpha", str(lo.alpha), "--lora-dropout",
                str(lo.dropout)]
        for t in lo.target_modules or ():
            out += ["--lora-target", t]
    out += arg_flags({"dtype": options.dtype, "trust_remote_code": options.trust_remote_code,
                      "chat_template": options.chat_template, "resume": options.resume,
                      "audit": options.audit})
    return out


def job_argv(job: TrainJob) -> list[str]:
    """The ``cai`` arguments that make the same call as :func:`run_job` (settings passed as ``--set``)."""
    data_flag = "--prompts" if job.method in ONLINE else "--data"
    argv = ["train", job.method, *(a for d in job.data for a in (data_flag, str(d))), "--model", job.model,
            "--output", str(job.output), *arg_flags(job.args)]
    argv += ["--config", str(job.config_file)] if job.config_file else []
    argv += [a for k, v in job.settings.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    argv += [a for item in job.overrides for a in ("--set", item)]
    return argv + option_flags(job.options)


def release() -> None:
    """Free what a trainer left: the accelerate state (a later trainer builds its own) and cached memory."""
    import sys

    if "accelerate.state" in sys.modules:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_or_launch(job: TrainJob, accelerate_config: str | None = None,
                  num_processes: int | None = None) -> dict[str, Any]:
    """Run the job (in this process, or through ``accelerate launch``); return its final metrics."""
    if accelerate_config:
        from cai.train.common.launch import relaunch

        code = relaunch(accelerate_config, num_processes, job_argv(job))
        if code != 0:
            raise CaiError(f"cai train {job.method} through accelerate exited with code {code}",
                           hint=f"see its log above; the partial output is in {job.output}")
        card = Path(job.output) / "cai_card.json"
        return json.loads(card.read_text(encoding="utf-8")).get("metrics", {}) if card.exists() else {}
    try:
        result = run_job(job)
    finally:
        release()
    return dict(result.metrics)
