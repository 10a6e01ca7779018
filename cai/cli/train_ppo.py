"""`cai train ppo`: our own PPO against a preference model, a judge, or a toy reward."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli import source_options as so
from cai.cli import train_options as co

RewardOpt = typer.Option(
    ..., "--reward", "-r",
    help="rm:PATH (a `cai train rm` output dir; a bare dir works too), judge:MODEL (p(Yes) from a feedback "
         "model on --judge-question), toy:token=TOKEN (fraction of the answer's tokens that are TOKEN) or "
         "toy:contains=TEXT.",
)


def ppo(
    prompts: list[Path] = typer.Option(..., "--prompts", "-p", help="Prompts: {\"prompt\": text or a list of "
                                       "messages} (or SFT/preference records: their prompts); repeatable. "
                                       + so.FORMS),
    reward: str = RewardOpt,
    output: Path = co.OutputOpt,
    model: str = co.ModelOpt,
    config: Path | None = typer.Option(None, "--config",
                                       help="YAML of PPOConfig keys (TRL's former PPOConfig names: kl_coef, "
                                            "cliprange, vf_coef, gamma, lam, response_length...)."),
    set_: list[str] | None = co.SetOpt,
    constitution: Path | None = typer.Option(None, "--constitution", "-c", help="Answer with its system "
                                             "prompt; its name/version/hash go into the card."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="System prompt for the policy "
                                             "(overrides the constitution's)."),
    judge_question: str | None = typer.Option(None, "--judge-question",
                                              help="judge: the Yes/No question about each answer."),
    judge_output: str = typer.Option("prob", "--judge-output", help="judge: prob (p(Yes)) or logodds."),
    judge_backend: str = typer.Option("hf", "--judge-backend",
                                      help="judge: hf (local) or openai (with --judge-base-url)."),
    judge_base_url: list[str] | None = typer.Option(None, "--judge-base-url",
                                                    help="judge: OpenAI-compatible server URL (repeatable)."),
    reward_batch_size: int = typer.Option(8, "--reward-batch-size",
                                          help="Answers per forward pass of the preference model or judge."),
    learning_rate: float | None = co.LearningRateOpt,
    max_steps: int | None = typer.Option(None, "--max-steps", help="PPO steps (config key max_steps; "
                                         "default: one pass over the prompts)."),
    total_episodes: int | None = typer.Option(None, "--total-episodes",
                                              help="Answers to sample in all (config key total_episodes)."),
    batch_size: int | None = co.BatchSizeOpt,
    grad_accum: int | None = co.GradAccumOpt,
    response_length: int | None = typer.Option(None, "--response-length",
                                               help="Most tokens per answer (config key response_length)."),
    kl_coef: float | None = typer.Option(None, "--kl-coef",
                                         help="KL penalty coefficient (config key kl_coef)."),
    target_kl: float | None = typer.Option(None, "--target-kl", help="Adaptive KL controller's target "
                                           "per-answer KL (config key target_kl)."),
    temperature: float | None = typer.Option(None, "--temperature",
                                             help="Sampling temperature (config key temperature)."),
    seed: int | None = co.SeedOpt,
    report_to: str | None = co.ReportToOpt,
    lora: bool = co.LoraOpt,
    lora_r: int = co.LoraROpt,
    lora_alpha: int = co.LoraAlphaOpt,
    lora_dropout: float = co.LoraDropoutOpt,
    lora_target: list[str] | None = co.LoraTargetOpt,
    dtype: str | None = co.DtypeOpt,
    trust_remote_code: bool = co.TrustRemoteCodeOpt,
    chat_template: str | None = co.ChatTemplateOpt,
    audit: Path | None = co.AuditOpt,
    accelerate_config: str | None = co.AccelerateConfigOpt,
    num_processes: int | None = co.NumProcessesOpt,
) -> None:
    """Train a policy with PPO (value head, frozen reference, KL penalty, GAE) against a reward."""
    co.relaunch_if_asked(accelerate_config, num_processes, output)
    from cai.train.jobs import run_job

    settings = co.trainer_options(
        learning_rate=learning_rate, max_steps=max_steps, batch_size=batch_size,
        grad_accum=grad_accum, seed=seed,
        report_to=report_to, total_episodes=total_episodes, response_length=response_length, kl_coef=kl_coef,
        target_kl=target_kl, temperature=temperature,
    )
    options = co.model_options(lora, lora_r, lora_alpha, lora_dropout, lora_target, dtype, trust_remote_code,
                               chat_template, audit=audit)
    run_job(co.job("ppo", prompts, output, model, config, set_, settings, options, reward=reward,
                   constitution=str(constitution) if constitution is not None else None,
                   system_prompt=system_prompt, judge_question=judge_question, judge_output=judge_output,
                   judge_backend=judge_backend, judge_base_url=judge_base_url or None,
                   reward_batch_size=reward_batch_size))
