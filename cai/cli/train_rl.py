"""`cai train rloo` and `cai train grpo`: online RL against a preference model or a judge (TRL)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from cai.cli import source_options as so
from cai.cli import train_options as co

_DOCS = {
    "rloo": "Train a policy with RLOO (leave-one-out baseline) against a preference model or a judge.",
    "grpo": "Train a policy with GRPO (group-normalised advantages) against a preference model or a judge.",
}


def _command(algorithm: str) -> Callable[..., None]:
    def command(
        prompts: list[Path] = typer.Option(..., "--prompts", "-p",
                                           help="Prompts (a prompt string or a list of messages "
                                                "each; SFT/preference records work too); repeatable. "
                                                + so.FORMS),
        reward: list[str] = typer.Option(..., "--reward", "-r",
                                         help="rm:PATH (a `cai train rm` output), judge:MODEL (p(Yes) on "
                                              "a rubric question), toy:token=T or toy:contains=TEXT; "
                                              "repeatable (summed, weighted by reward_weights)."),
        output: Path = co.OutputOpt,
        model: str = co.ModelOpt,
        judge_question: str | None = typer.Option(None, "--judge-question",
                                                  help="judge: the Yes/No question asked about each answer."),
        reward_batch_size: int = typer.Option(8, "--reward-batch-size",
                                              help="Answers scored per forward pass of the reward model."),
        num_generations: int | None = typer.Option(None, "--num-generations", help="Answers sampled per "
                                                   "prompt (config key num_generations)."),
        max_completion_length: int | None = typer.Option(None, "--max-completion-length",
                                                         help="Longest sampled answer in tokens."),
        beta: float | None = typer.Option(None, "--beta",
                                          help="KL penalty against the reference (config key beta)."),
        temperature: float | None = typer.Option(None, "--temperature", help="Sampling temperature."),
        config: Path | None = co.ConfigOpt,
        set_: list[str] | None = co.SetOpt,
        learning_rate: float | None = co.LearningRateOpt,
        max_steps: int | None = co.MaxStepsOpt,
        epochs: float | None = co.EpochsOpt,
        batch_size: int | None = co.BatchSizeOpt,
        grad_accum: int | None = co.GradAccumOpt,
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
        co.relaunch_if_asked(accelerate_config, num_processes, output)
        from cai.train.jobs import run_job

        settings = co.trainer_options(
            learning_rate=learning_rate, max_steps=max_steps, epochs=epochs, batch_size=batch_size,
            grad_accum=grad_accum, seed=seed, logging_steps=logging_steps, report_to=report_to,
            num_generations=num_generations, max_completion_length=max_completion_length, beta=beta,
            temperature=temperature)
        options = co.model_options(lora, lora_r, lora_alpha, lora_dropout, lora_target, dtype,
                                   trust_remote_code, chat_template, resume, audit)
        run_job(co.job(algorithm, prompts, output, model, config, set_, settings, options,
                       reward=list(reward), judge_question=judge_question,
                       reward_batch_size=reward_batch_size))

    command.__name__ = command.__qualname__ = algorithm
    command.__doc__ = _DOCS[algorithm]
    return command


rloo = _command("rloo")
grpo = _command("grpo")
