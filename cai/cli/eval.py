"""`cai eval`: harm, over-refusal, helpfulness and reward-hacking probes for one or more models, with a
report."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli import backend_options as bo

EXAMPLES = Path("examples/prompts")


def eval_command(
    model: list[str] | None = typer.Option(None, "--model", "-m", help="NAME=PATH (repeatable), e.g. "
                                           "base=default dpo=runs/x/dpo; default: base=default."),
    baseline: str | None = typer.Option(None, "--baseline", help="Model name the win rate and KL are against "
                                        "(default: the first)."),
    redteam: Path | None = typer.Option(None, "--redteam", help="Red-team prompts JSONL (harm)."),
    lookalike: Path | None = typer.Option(None, "--lookalike",
                                          help="XSTest-format JSONL with label safe/unsafe (over-refusal)."),
    benign: Path | None = typer.Option(None, "--benign", help="Benign instructions JSONL (helpfulness)."),
    limit: int | None = typer.Option(None, "--limit",
                                     help="First N prompts per set (look-alikes: N safe and N unsafe)."),
    constitution: str = typer.Option("harmless", "--constitution", "-c",
                                     help="Constitution file or shipped name (the judge's principles)."),
    system_prompt: str | None = typer.Option(None, "--system-prompt",
                                             help="System prompt of the evaluated models (default: none)."),
    judge: str = typer.Option("rubric", "--judge", help="Harm judge: rubric (Yes/No on the principles, both "
                              "polarities) or pairwise (A/B vs a refusal, both orders)."),
    feedback_model: str = typer.Option("default", "--feedback-model", help="The judge model."),
    feedback_backend: str = typer.Option("hf", "--feedback-backend",
                                         help="hf or openai for the judge model."),
    feedback_base_url: list[str] | None = typer.Option(None, "--feedback-base-url",
                                                       help="Server(s) of the judge model (repeatable)."),
    feedback_batch_size: int = typer.Option(8, "--feedback-batch-size",
                                            help="hf: judge chats per forward pass."),
    few_shot: bool = typer.Option(False, "--few-shot", help="Pairwise harm judge: show the constitution's "
                                  "feedback examples first."),
    preference_model: Path | None = typer.Option(None, "--preference-model",
                                                 help="A `cai train rm` dir, for the reward-hacking probes."),
    curves: list[str] | None = typer.Option(None, "--curves", help="NAME=PATH (repeatable): a metrics.jsonl, "
                                            "trainer_state.json, or training run folder."),
    audit: Path | None = typer.Option(None, "--audit",
                                      help="audit.json of `cai audit labeler` (reliability diagram)."),
    judge_audit: Path | None = typer.Option(None, "--judge-audit",
                                            help="audit.json of `cai audit judge`: the harm judge against "
                                                 "human labels; at chance its figures print as 'no signal'."),
    refusal_audit: Path | None = typer.Option(None, "--refusal-audit",
                                              help="audit.json of `cai audit refusal`: the refusal "
                                                   "detector's accuracy, shown beside its figures."),
    samples: int = typer.Option(4, "--samples", help="Prompts per set shown side by side (baseline vs each "
                                "model) in the report."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression",
                                            help="Exit with code 1 when a model is detectably worse than the "
                                                 "baseline on the constitution's aim (for CI)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Answer length (greedy decoding)."),
    seed: int = typer.Option(0, "--seed"),
    output: Path = typer.Option(Path("runs/eval"), "--output", "-o", help="Run folder (reruns resume)."),
    spec: Path | None = typer.Option(None, "--spec", help="A YAML EvalSpec instead of the options (--output "
                                     "and --limit still apply)."),
    backend: str = bo.BackendOpt,
    base_url: list[str] | None = bo.BaseUrlOpt,
    api_key_env: str = bo.ApiKeyEnvOpt,
    batch_size: int = typer.Option(64, "--batch-size",
                                   help="hf: sequences per forward pass while answering."),
    device: str | None = bo.DeviceOpt,
    dtype: str | None = bo.DtypeOpt,
) -> None:
    """Evaluate models: harmful compliance and refusals on red-team prompts, over-refusal on look-alikes,
    win rate against a baseline, reward-hacking probes; writes eval.json, report.md and report.html.

    Without prompt-set options the shipped examples/prompts files are used (when run from the project root).
    """
    from cai.cli.logs import setup_logging
    from cai.eval.compare import COMPARISON_LEGEND, format_comparison_table, regressions
    from cai.eval.report import judge_lines
    from cai.eval.run import evaluate

    setup_logging(output)
    if spec is not None:
        from cai.eval.spec import load_spec

        the_spec = load_spec(spec)
        if limit is not None:
            the_spec = the_spec.model_copy(update={"limit": limit})
    else:
        the_spec = spec_from_options(
            model=model or ["base=default"], baseline=baseline, redteam=redteam, lookalike=lookalike,
            benign=benign, limit=limit, constitution=constitution, system_prompt=system_prompt, judge=judge,
            feedback_model=feedback_model, feedback_backend=feedback_backend,
            feedback_base_urls=feedback_base_url or [], feedback_batch_size=feedback_batch_size,
            few_shot=few_shot, preference_model=preference_model, curves=curves or [], audit=audit,
            judge_audit=judge_audit, refusal_audit=refusal_audit, samples=samples,
            max_new_tokens=max_new_tokens,
            seed=seed, backend=backend, base_urls=base_url or [], api_key_env=api_key_env,
            batch_size=batch_size, device=device, dtype=dtype,
        )
    summary = evaluate(the_spec, output)
    print(results_table(summary))
    print("\n" + "\n".join(judge_lines(summary)))
    if len(summary.models) > 1:
        print(f"\n{COMPARISON_LEGEND}:\n{format_comparison_table(summary)}")
    print(f"\nreport: {output / 'report.html'} (and report.md, eval.json; answers and judgements "
          f"in {output})")
    exit_on_regressions(regressions(summary) if fail_on_regression else [])


def exit_on_regressions(lines: list[str]) -> None:
    """With ``--fail-on-regression``: say what regressed on stderr and exit 1 (nothing when the list is
    empty)."""
    if lines:
        for line in lines:
            typer.echo(f"regression: {line}", err=True)
        raise typer.Exit(1)


def spec_from_options(*, model: list[str], curves: list[str], backend: str, base_urls: list[str], **fields):
    """An EvalSpec from the command's options; a bad option is one line naming it."""
    from pydantic import ValidationError

    from cai.core.errors import CaiError
    from cai.eval.spec import EvalSpec, field_of, parse_model_option

    models = [parse_model_option(m).model_copy(update={"backend": backend, "base_urls": base_urls})
              for m in model]
    if backend == "openai" and not base_urls:
        raise CaiError("--backend openai needs --base-url", hint="e.g. --base-url http://127.0.0.1:8000/v1")
    if backend != "openai" and base_urls:
        raise CaiError("--base-url is only for --backend openai",
                       hint="add --backend openai, or drop --base-url")
    named_curves = {}
    for item in curves:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CaiError(f"--curves {item!r}: expected NAME=PATH", hint="e.g. --curves dpo=runs/x/dpo")
        named_curves[name] = Path(path)
    if all(fields.get(k) is None for k in ("redteam", "lookalike", "benign")):
        for k in ("redteam", "lookalike", "benign"):
            if (EXAMPLES / f"{k}.jsonl").is_file():
                fields[k] = EXAMPLES / f"{k}.jsonl"
    try:
        return EvalSpec(models=models, curves=named_curves, **fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        loc = tuple(err["loc"]) or field_of(msg)
        field = "--" + ".".join(str(p) for p in loc).replace("_", "-") if loc else "options"
        raise CaiError(f"{field}: {msg}",
                       hint="see cai eval --help") from None


def results_table(summary) -> str:
    """The figures of every model as an aligned plain-text table."""
    from cai.eval.report import table_rows

    rows = [table_rows(m) for m in summary.models]
    if not rows:
        return ""
    labels = [label for label, _ in rows[0]]
    cols = [[m.name] + [v for _, v in r] for m, r in zip(summary.models, rows)]
    lw = max(len(s) for s in ["figure", *labels])
    widths = [max(len(s) for s in c) for c in cols]
    lines = []
    for i, label in enumerate(["figure", *labels]):
        lines.append("  ".join([label.ljust(lw), *(c[i].ljust(w) for c, w in zip(cols, widths))]).rstrip())
        if i == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)
