"""`cai train rm`: a preference model (one-output classifier) with a soft-label Bradley-Terry loss."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli import source_options as so
from cai.cli import train_options as co


def rm(
    data: list[Path] = typer.Option(..., "--data", "-d", help="Preference pairs (prompt/chosen/rejected, "
                                    "p_chosen, weight), e.g. from `cai label`, or hh-rlhf, UltraFeedback, "
                                    "implicit-prompt, PKU-SafeRLHF rows; repeatable. " + so.FORMS),
    output: Path = co.OutputOpt,
    model: str = co.ModelOpt,
    pad_token: str | None = typer.Option(None, "--pad-token",
                                         help="An existing token to pad with when the tokenizer pads with "
                                              "EOS (the default model does: use '<|endoftext|>')."),
    margin: float | None = typer.Option(None, "--margin",
                                        help="Require r_chosen - r_rejected to exceed this margin."),
    eval_fraction: float = typer.Option(0.1, "--eval-fraction", help="Fraction of pairs held out for "
                                        "accuracy (split by a hash of each id)."),
    human_eval: Path | None = typer.Option(None, "--human-eval",
                                           help="Human-labelled preference JSONL to report accuracy on."),
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
    """Train a preference model on preference pairs and report its held-out (and human-eval) accuracy."""
    co.relaunch_if_asked(accelerate_config, num_processes, output)
    from cai.train.jobs import run_job

    settings = co.trainer_options(learning_rate=learning_rate, max_steps=max_steps, epochs=epochs,
                                  batch_size=batch_size, grad_accum=grad_accum,
                                  max_length=max_length, seed=seed,
                                  logging_steps=logging_steps, report_to=report_to)
    options = co.model_options(lora, lora_r, lora_alpha, lora_dropout, lora_target, dtype, trust_remote_code,
                               chat_template, resume, audit)
    run_job(co.job("rm", data, output, model, config, set_, settings, options, pad_token=pad_token,
                   margin=margin, eval_fraction=eval_fraction,
                   human_eval=str(human_eval) if human_eval else None))
