"""`cai critique`: SL-CAI critique/revision traces, the SFT set and stats (resumable)."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli import backend_options as bo
from cai.cli import source_options as so


def critique(
    prompts: str = typer.Option(..., "--prompts", "-p", help="Red-team prompts: {\"prompt\": str} or "
                                "{\"prompt\": a list of messages ending with a user turn}. " + so.FORMS),
    columns: str | None = so.ColumnsOpt,
    constitution: str = typer.Option("harmless", "--constitution", "-c",
                                     help="Constitution file or shipped name."),
    output: Path = typer.Option(Path("runs/critique"), "--output", "-o", help="Run directory: "
                                "revisions.jsonl (appended; reruns resume), sft.jsonl, stats.json."),
    output_dir: Path | None = typer.Option(None, "--output-dir", hidden=True,
                                           help="Old spelling of --output."),
    rounds: int = typer.Option(2, "--rounds", help="Critique/revision rounds per answer (the paper used 4)."),
    samples_per_prompt: int = typer.Option(1, "--samples-per-prompt", help="Independent traces per prompt."),
    no_critique: bool = typer.Option(False, "--no-critique",
                                     help="Revise directly, without asking for a critique first."),
    no_few_shot: bool = typer.Option(False, "--no-few-shot",
                                     help="Leave out the constitution's few-shot examples."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Per answer, critique and revision."),
    temperature: float = typer.Option(0.7, "--temperature", help="0 for greedy."),
    top_p: float = typer.Option(0.95, "--top-p"),
    seed: int = typer.Option(0, "--seed",
                             help="Base seed of principle draws and of every request's sampling."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N prompts."),
    batch_size: int = typer.Option(16, "--batch-size",
                                   help="Prompts that advance through the rounds together (hf: also the "
                                        "sequences per forward pass, times --samples-per-prompt)."),
    helpful_prompts: str | None = typer.Option(None, "--helpful-prompts",
                                               help="Benign prompts whose plain answers (no revision) are "
                                                    "mixed into sft.jsonl (any record source)."),
    helpful_ratio: float = typer.Option(1.0, "--helpful-ratio",
                                        help="Helpful prompts per red-team prompt (0.5: half as many), "
                                             "picked from --helpful-prompts by a hash of (seed, prompt id)."),
    sft_round: int | None = typer.Option(None, "--sft-round",
                                         help="Round whose revision goes to sft.jsonl (default: the last); a "
                                              "flagged one falls back to the latest clean earlier round."),
    sft_source: str = typer.Option("revision", "--sft-source", help="What sft.jsonl trains on: revision (the "
                                   "final clean revision), initial (context distillation: the answer made "
                                   "under the constitution's system prompt, trained without it) or best (a "
                                   "clean revision the judge prefers to the initial answer, when the judge "
                                   "has signal; else the initial answer)."),
    refusal_gate: bool = typer.Option(False, "--refusal-gate", help="Keep a red-team SFT target only when it "
                                      "declines and a helpful one only when it does not (the audited refusal "
                                      "detector decides): never train on harmful compliance."),
    answer_few_shot: bool = typer.Option(False, "--answer-few-shot",
                                         help="The initial answers of red-team prompts see the "
                                              "constitution's examples (prompt -> revision) first."),
    feedback_model: str | None = typer.Option(None, "--feedback-model",
                                              help="The judge of --sft-source best (default: --model)."),
    feedback_backend: str | None = typer.Option(None, "--feedback-backend",
                                                help="hf or openai for the judge (default: --backend)."),
    feedback_base_url: list[str] | None = typer.Option(None, "--feedback-base-url",
                                                       help="Server(s) of the judge (repeatable)."),
    feedback_batch_size: int = typer.Option(8, "--feedback-batch-size",
                                            help="hf: judge chats per forward pass."),
    revision_pairs: bool = typer.Option(False, "--revision-pairs",
                                        help="Also write pairs_revision.jsonl: final revision preferred over "
                                             "the initial answer (source=revision shortcut)."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Start revisions.jsonl afresh instead of resuming."),
    model: str = bo.ModelOpt,
    backend: str = bo.BackendOpt,
    base_url: list[str] | None = bo.BaseUrlOpt,
    api_key_env: str = bo.ApiKeyEnvOpt,
    concurrency: int = bo.ConcurrencyOpt,
    timeout: float = bo.TimeoutOpt,
    max_retries: int = bo.MaxRetriesOpt,
    device: str | None = bo.DeviceOpt,
    dtype: str | None = bo.DtypeOpt,
    trust_remote_code: bool = bo.TrustRemoteCodeOpt,
    chat_template: str | None = bo.ChatTemplateOpt,
) -> None:
    """Answer, critique by sampled principles and revise; write traces, the SFT set and stats."""
    from pydantic import ValidationError

    from cai.backends.spec import spec_from_options
    from cai.cli.logs import setup_logging
    from cai.constitution.load import load_constitution
    from cai.core.errors import CaiError, pydantic_error
    from cai.core.jsonl import read_prompts
    from cai.core.records import SamplingParams
    from cai.stages.critique.loop import CritiqueConfig
    from cai.stages.critique.outputs import format_summary
    from cai.stages.critique.stage import CritiqueStageConfig, run_critique

    setup_logging(output_dir or output)
    if sft_round is not None and not 1 <= sft_round <= rounds:
        raise CaiError(f"--sft-round {sft_round} is not a round of this run (1..{rounds})",
                       hint="pick 1..--rounds")
    if helpful_ratio < 0:
        raise CaiError(f"--helpful-ratio {helpful_ratio} is negative", hint="use e.g. 0.5 or 1")
    try:
        config = CritiqueStageConfig(
            loop=CritiqueConfig(
                rounds=rounds, samples_per_prompt=samples_per_prompt, no_critique=no_critique,
                few_shot=not no_few_shot, batch_size=batch_size, answer_few_shot=answer_few_shot,
                params=SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                      seed=seed)),
            helpful_ratio=helpful_ratio, sft_round=sft_round, revision_pairs=revision_pairs,
            sft_source=sft_source)
    except ValidationError as exc:
        raise pydantic_error(exc, "options", options=True) from None
    spec = spec_from_options(backend, model, base_url=base_url, api_key_env=api_key_env,
                             concurrency=concurrency, timeout=timeout, max_retries=max_retries, device=device,
                             dtype=dtype, trust_remote_code=trust_remote_code, chat_template=chat_template)
    f_kind = feedback_backend or backend
    feedback = spec_from_options(
        f_kind, feedback_model or model, prefix="feedback-", batch_size=feedback_batch_size,
        base_url=feedback_base_url or (base_url if f_kind == "openai" else None), api_key_env=api_key_env,
        concurrency=concurrency, timeout=timeout, max_retries=max_retries, device=device, dtype=dtype,
        trust_remote_code=trust_remote_code, chat_template=chat_template)
    const = load_constitution(constitution)
    records = read_prompts(so.mapped(prompts, columns))[: limit or None]
    pool = read_prompts(helpful_prompts) if helpful_prompts is not None else []
    stats = run_critique(records, const, spec, config, output_dir or output, helpful_pool=pool,
                         resume=not overwrite, feedback=feedback)
    typer.echo(format_summary(stats))
