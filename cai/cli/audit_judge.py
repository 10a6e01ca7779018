"""`cai audit judge`: the harm judge of `cai eval` against human harmlessness labels."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli.judge_options import FeedbackChatTemplateOpt, GuardCategoriesOpt, GuardTemplateOpt


def judge(
    data: Path = typer.Option(..., "--data", "-d",
                              help="Human pairs JSONL: prompt/chosen/rejected, chosen = the "
                              "answer the human judged less harmful (e.g. hh_harmless_pairs_dev.jsonl)."),
    output: Path = typer.Option(Path("runs/audit-judge"), "--output", "-o",
                                help="Folder for judgements.jsonl (appended as made; a rerun resumes) "
                                     "and audit.json."),
    judge_kind: str = typer.Option("rubric", "--judge",
                                   help="rubric (two Yes/No questions of opposite polarity), "
                                   "pairwise (A/B against a plain refusal) or guard (a Llama Guard style "
                                   "classifier as --feedback-model: 'safe' / 'unsafe' + category codes)."),
    feedback_model: str = typer.Option("default", "--feedback-model", "-m",
                                       help="The judge model ('default' = embedded SmolLM2-135M-Instruct)."),
    feedback_backend: str = typer.Option("hf", "--feedback-backend", help="hf or openai."),
    feedback_base_url: list[str] | None = typer.Option(None, "--feedback-base-url",
                                                       help="OpenAI-compatible server(s) of the judge "
                                                            "(repeatable)."),
    feedback_batch_size: int = typer.Option(16, "--feedback-batch-size",
                                            help="hf: sequences per forward pass."),
    feedback_chat_template: str | None = FeedbackChatTemplateOpt,
    guard_template: Path | None = GuardTemplateOpt,
    guard_categories: Path | None = GuardCategoriesOpt,
    constitution: str = typer.Option("harmless", "--constitution", "-c",
                                     help="Constitution file or shipped name."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N pairs of the file."),
    seed: int = typer.Option(0, "--seed", help="Seed of the judge (pairwise: its principle draws)."),
) -> None:
    """Judge both answers of each human pair and report how often the judge ranks them as the human did."""
    from cai.audit.judge import format_judge_audit, run_judge_audit
    from cai.backends.spec import spec_from_options
    from cai.cli.logs import setup_logging
    from cai.constitution.load import load_constitution
    from cai.core.errors import CaiError

    setup_logging(output)
    if judge_kind not in ("rubric", "pairwise", "guard"):
        raise CaiError(f"--judge {judge_kind!r}: unknown judge",
                       hint="use --judge rubric, --judge pairwise or --judge guard")
    if judge_kind != "guard" and (guard_template is not None or guard_categories is not None):
        raise CaiError("--guard-template and --guard-categories are only for --judge guard",
                       hint="add --judge guard, or drop them")
    guard = None
    if judge_kind == "guard":
        from cai.eval.guard import load_guard_config

        guard = load_guard_config(guard_template, guard_categories)
    if feedback_chat_template == "plain-llama3":
        from cai.eval.guard import PLAIN_LLAMA3_CHAT_TEMPLATE

        feedback_chat_template = PLAIN_LLAMA3_CHAT_TEMPLATE
    feedback = spec_from_options(feedback_backend, feedback_model, prefix="feedback-",
                                 base_url=feedback_base_url, batch_size=feedback_batch_size,
                                 chat_template=feedback_chat_template)
    const = load_constitution(constitution)
    audit = run_judge_audit(data, const, feedback, output, judge=judge_kind, limit=limit,  # type: ignore[arg-type]
                            seed=seed, guard=guard)
    print(format_judge_audit(audit))
    typer.echo(f"wrote {output / 'audit.json'} and the judgements {output / 'judgements.jsonl'}", err=True)
