"""`cai train dpo`: DPO on preference pairs (TRL's DPOTrainer), optionally with per-pair soft labels."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli import source_options as so
from cai.cli import train_options as co


def dpo(
    data: list[Path] = typer.Option(..., "--data", "-d", help="Preference pairs (prompt/chosen/rejected, "
                                    "p_chosen, weight), e.g. from `cai label`, or hh-rlhf, UltraFeedback, "
                                    "implicit-prompt, PKU-SafeRLHF rows; repeatable. " + so.FORMS),
    output: Path = co.OutputOpt,
    model: str = co.ModelOpt,
    ref_model: str | None = typer.Option(None, "--ref-model",
                                         help="Reference model (default: the base with the LoRA adapter off "
                                              "under --lora, else a frozen copy of --model)."),
    soft_labels: bool = typer.Option(False, "--soft-labels", help="Use each pair's p_chosen and weight "
                                     "(conservative DPO per pair) instead of hard labels."),
    beta: float | None = typer.Option(None, "--beta", help="KL strength (config key beta)."),
    loss_type: list[str] | None = typer.Option(None, "--loss-type", help="TRL loss: sigmoid, robust, ipo, "
                                               "sigmoid_norm, hinge... (repeatable to combine)."),
    eval_fraction: float = co.EvalFractionOpt,
    config: Path | None = co.ConfigOpt,
    set_: list[str] | None = co.SetOpt,
    learning_rate: float | None = co.LearningRateOpt,
    max_steps: int | None = co.MaxStepsOpt,
    epochs: float | None = co.EpochsOpt,
    batch_size: int | None = co.BatchSizeOpt,
    grad_accum: int | None = co.GradAccumOpt,
    max_length: int | None = co.MaxLengthOpt,
    seed: int | None = co.SeedOpt,
    logging_steps: int | None = co.LoggingStepsOpt,
    report_to: str | None = co.ReportToOpt,
    lora: bool = co.LoraOpt,
    lora_r: int = co.LoraROpt,
    lora_alpha: int = co.LoraAlphaOpt,
    lora_dropout: float = co.LoraDropoutOpt,
    lora_target: list[str] | None = co.LoraTargetOpt,
    dtype: str | None = co.DtypeOpt,
    trust_remote_code: bool = co.TrustRemoteCodeOpt,
    chat_template: str | None = co.ChatTemplateOpt,
    resume: bool = co.ResumeOpt,
    audit: Path | None = co.AuditOpt,
    accelerate_config: str | None = co.AccelerateConfigOpt,
    num_processes: int | None = co.NumProcessesOpt,
) -> None:
    """Train a policy with DPO on preference pairs against a frozen reference."""
    co.relaunch_if_asked(accelerate_config, num_processes, output)
    from cai.train.jobs import run_job

    settings = co.trainer_options(learning_rate=learning_rate, max_steps=max_steps, epochs=epochs,
                                  batch_size=batch_size, grad_accum=grad_accum,
                                  max_length=max_length, seed=seed,
                                  logging_steps=logging_steps, report_to=report_to, beta=beta,
                                  loss_type=list(loss_type) if loss_type else None)
    options = co.model_options(lora, lora_r, lora_alpha, lora_dropout, lora_target, dtype, trust_remote_code,
                               chat_template, resume, audit)
    run_job(co.job("dpo", data, output, model, config, set_, settings, options, ref_model=ref_model,
                   soft_labels=soft_labels, eval_fraction=eval_fraction))
