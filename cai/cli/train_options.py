"""Typer options shared by every ``cai train ...`` command (imports only typer and stdlib).

A command declares the options it needs and turns them into config keys with
:func:`trainer_options` (only options the user passed: their default is
``None``) and into LoRA settings with :func:`lora_options`; the config itself is
built by :func:`cai.train.common.config.build_config`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from cai.train.common.models import LoraOptions, ModelOptions
    from cai.train.jobs import TrainJob

ConfigOpt = typer.Option(None, "--config", help="YAML of the trainer's own config keys (TRL's "
                         "SFTConfig/RewardConfig/DPOConfig/... field names).")
SetOpt = typer.Option(None, "--set", help="Override one config key, KEY=VALUE (value read as YAML); "
                      "repeatable; wins over --config and the options.")
OutputOpt = typer.Option(..., "--output", "-o", help="Output directory: the trained model, its tokenizer, "
                         "checkpoints, README.md model card.")
ModelOpt = typer.Option("default", "--model", "-m", help="Model to start from: 'default' (embedded "
                        "SmolLM2-135M-Instruct), a hub id, or a local path.")
LoraOpt = typer.Option(False, "--lora", help="Train a LoRA adapter (peft) instead of all the weights.")
LoraROpt = typer.Option(16, "--lora-r", help="LoRA rank.")
LoraAlphaOpt = typer.Option(32, "--lora-alpha", help="LoRA alpha (scale = alpha / r).")
LoraDropoutOpt = typer.Option(0.05, "--lora-dropout", help="LoRA dropout.")
LoraTargetOpt = typer.Option(None, "--lora-target",
                             help="Module name to adapt (repeatable; default: every linear layer).")
ReportToOpt = typer.Option(None, "--report-to",
                           help="Experiment tracker: none (default), trackio, wandb, tensorboard, all.")
AccelerateConfigOpt = typer.Option(None, "--accelerate-config", help="Run through `accelerate launch`: ddp, "
                                   "fsdp, zero3 (shipped profiles) or an accelerate config YAML.")
NumProcessesOpt = typer.Option(None, "--num-processes", help="With --accelerate-config: processes to start "
                               "(default: one per GPU; 2 on CPU).")
AuditOpt = typer.Option(None, "--audit", help="Labeler audit JSON to summarise in the model card (default: "
                        "audit.json beside the preference file).")
LearningRateOpt = typer.Option(None, "--learning-rate", "--lr",
                               help="Peak learning rate (config key learning_rate).")
MaxStepsOpt = typer.Option(None, "--max-steps",
                           help="Stop after this many optimizer steps (config key max_steps).")
EpochsOpt = typer.Option(None, "--epochs", help="Passes over the data (config key num_train_epochs).")
BatchSizeOpt = typer.Option(None, "--batch-size",
                            help="Examples per device per step (config key per_device_train_batch_size).")
GradAccumOpt = typer.Option(None, "--grad-accum",
                            help="Gradient accumulation steps (config key gradient_accumulation_steps).")
MaxLengthOpt = typer.Option(None, "--max-length", help="Longest tokenized sequence (config key max_length).")
SeedOpt = typer.Option(None, "--seed", help="Random seed (config key seed).")
LoggingStepsOpt = typer.Option(None, "--logging-steps", help="Log every N steps (config key logging_steps).")
DtypeOpt = typer.Option(None, "--dtype", help="Weights dtype: float32, bfloat16, float16 (default: fp32 on "
                        "CPU, bf16/fp16 on GPU).")
TrustRemoteCodeOpt = typer.Option(False, "--trust-remote-code",
                                  help="Allow the model's own code to run (off unless you pass it).")
ChatTemplateOpt = typer.Option(None, "--chat-template",
                               help="A Jinja chat template (file or string) for models without one.")
ResumeOpt = typer.Option(False, "--resume",
                         help="Continue from the newest checkpoint in the output directory.")
EvalFractionOpt = typer.Option(0.0, "--eval-fraction", help="Fraction of records held out for evaluation "
                               "(split by a hash of each id).")


def trainer_options(
    *,
    learning_rate: float | None = None,
    max_steps: int | None = None,
    epochs: float | None = None,
    batch_size: int | None = None,
    grad_accum: int | None = None,
    max_length: int | None = None,
    seed: int | None = None,
    logging_steps: int | None = None,
    report_to: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The config keys of the options the user passed (``None`` means not passed).

    >>> trainer_options(learning_rate=1e-5, max_steps=None, epochs=2, beta=0.1, loss_type=None)
    {'learning_rate': 1e-05, 'num_train_epochs': 2, 'beta': 0.1}
    """
    keys = {
        "learning_rate": learning_rate,
        "max_steps": max_steps,
        "num_train_epochs": epochs,
        "per_device_train_batch_size": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "max_length": max_length,
        "seed": seed,
        "logging_steps": logging_steps,
        "report_to": report_to,
        **extra,
    }
    return {k: v for k, v in keys.items() if v is not None}


def model_options(lora: bool, lora_r: int, lora_alpha: int, lora_dropout: float,
                  lora_target: list[str] | None,
                  dtype: str | None, trust_remote_code: bool, chat_template: str | None, resume: bool = False,
                  audit: Any = None) -> ModelOptions:
    """The :class:`cai.train.common.models.ModelOptions` of a ``cai train`` command's shared options."""
    from cai.train.common.models import ModelOptions

    return ModelOptions(lora=lora_options(lora, lora_r, lora_alpha, lora_dropout, lora_target), dtype=dtype,
                        trust_remote_code=trust_remote_code, chat_template=chat_template, resume=resume,
                        audit=str(audit) if audit is not None else None)


def job(method: str, data: list[Any], output: Any, model: str, config: Any, set_: list[str] | None,
        settings: dict[str, Any], options: ModelOptions, **args: Any) -> TrainJob:
    """The :class:`cai.train.jobs.TrainJob` a ``cai train METHOD`` command runs."""
    from cai.train.jobs import TrainJob

    return TrainJob(method, tuple(str(d) for d in data), str(output), model=model, settings=settings,
                    config_file=str(config) if config is not None else None, overrides=tuple(set_ or ()),
                    options=options, args=args)


def lora_options(enabled: bool, r: int, alpha: int, dropout: float, targets: list[str] | None
                 ) -> LoraOptions | None:
    """A :class:`cai.train.common.models.LoraOptions` when ``--lora`` was passed, else None.

    >>> lora_options(True, 8, 16, 0.0, ["q_proj"])
    LoraOptions(r=8, alpha=16, dropout=0.0, target_modules=('q_proj',))
    >>> lora_options(False, 8, 16, 0.0, None) is None
    True
    """
    if not enabled:
        return None
    from cai.train.common.models import LoraOptions

    return LoraOptions(r=r, alpha=alpha, dropout=dropout, target_modules=tuple(targets) if targets else None)


def relaunch_if_asked(accelerate_config: str | None, num_processes: int | None, output: Any = None) -> None:
    """With ``--accelerate-config``, run this same command under ``accelerate launch`` and exit with its code.

    Also sets up logging (``output/cai.log`` kept by rank 0); in the launched processes only rank 0 logs
    at INFO.
    """
    import logging
    import os

    from cai.cli.logs import setup_logging
    from cai.train.common.launch import is_child, maybe_relaunch

    rank0 = not (is_child() and os.environ.get("RANK", "0") != "0")
    setup_logging(output if rank0 else None)
    if not rank0:
        logging.getLogger("cai").setLevel(logging.WARNING)
    if not accelerate_config:
        return
    code = maybe_relaunch(accelerate_config, num_processes)
    if code is not None:
        raise typer.Exit(code)
