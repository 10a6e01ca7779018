"""`cai audit`: the toolkit's automatic judgements against human labels: the AI labeler, the refusal detector,
the harm judge."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli import audit_judge, audit_pools, audit_refusal
from cai.cli import backend_options as bo
from cai.cli import label as lab

app = typer.Typer(help="Audit the AI labeler, the refusal detector and the harm judge against human labels.",
                  no_args_is_help=True)


@app.command("labeler")
def labeler(
    data: Path | None = typer.Option(None, "--data", "-d", help="Required. Human-labelled pairs JSONL: "
                                     "prompt/chosen/rejected, chosen = the human's pick."),
    pairs: Path | None = typer.Option(None, "--pairs", hidden=True, help="Old spelling of --data."),
    feedback_model: str = typer.Option("default", "--feedback-model", "-m", help="The labeler model "
                                       "('default' = embedded SmolLM2-135M-Instruct)."),
    feedback_backend: str = typer.Option("hf", "--feedback-backend", help="hf or openai."),
    feedback_base_url: list[str] | None = typer.Option(None, "--feedback-base-url", help="OpenAI-compatible "
                                                       "server(s) of the labeler (repeatable)."),
    constitution: str = typer.Option("harmless", "--constitution", "-c",
                                     help="Constitution file or shipped name."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N pairs of the file."),
    seed: int = typer.Option(0, "--seed", help="Seed of the principle draws."),
    output: Path = typer.Option(Path("runs/audit-labeler"), "--output", "-o",
                                help="Folder for labels.jsonl (resumable), audit.json, reliability.png."),
    bins: int = typer.Option(5, "--bins", help="Calibration bins over confidence [0.5, 1]."),
    principles_per_pair: int = lab.PrinciplesOpt,
    cot: bool = lab.CotOpt,
    cot_clamp: tuple[float, float] = lab.CotClampOpt,
    cot_max_new_tokens: int = lab.CotTokensOpt,
    no_few_shot: bool = lab.NoFewShotOpt,
    pairs_per_call: int = lab.PairsPerCallOpt,
    feedback_batch_size: int = lab.FeedbackBatchOpt,
    api_key_env: str = bo.ApiKeyEnvOpt,
    concurrency: int = bo.ConcurrencyOpt,
    timeout: float = bo.TimeoutOpt,
    max_retries: int = bo.MaxRetriesOpt,
    device: str | None = bo.DeviceOpt,
    dtype: str | None = bo.DtypeOpt,
    trust_remote_code: bool = bo.TrustRemoteCodeOpt,
    chat_template: str | None = bo.ChatTemplateOpt,
) -> None:
    """Label human pairs with the AI labeler and report agreement, order flips and calibration."""
    from cai.audit.labeler import format_audit, run_labeler_audit
    from cai.backends.spec import spec_from_options
    from cai.cli.logs import setup_logging
    from cai.constitution.load import load_constitution
    from cai.core.errors import CaiError

    setup_logging(output)
    data = data or pairs
    if data is None:
        raise CaiError("cai audit labeler needs --data FILE",
                       hint="e.g. --data ../shared/data/hh_harmless_pairs_dev.jsonl")
    config = lab.label_stage_config(principles_per_pair, seed, cot, cot_clamp, cot_max_new_tokens,
                                    no_few_shot, pairs_per_call)
    feedback = spec_from_options(feedback_backend, feedback_model, prefix="feedback-",
                                 base_url=feedback_base_url, api_key_env=api_key_env, concurrency=concurrency,
                                 timeout=timeout, max_retries=max_retries, batch_size=feedback_batch_size,
                                 device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                                 chat_template=chat_template)
    audit = run_labeler_audit(data, load_constitution(constitution), feedback, config, output,
                              limit=limit, bins=bins)
    print(format_audit(audit))
    typer.echo(f"wrote {output / 'audit.json'}, {output / 'reliability.png'} and the raw labels "
               f"{output / 'labels.jsonl'}", err=True)


app.command("refusal")(audit_refusal.refusal)
app.command("judge")(audit_judge.judge)
app.command("pools")(audit_pools.pools)
