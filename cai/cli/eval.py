"""`cai eval`: harm, over-refusal, helpfulness and reward-hacking probes for one or more models, with a
report."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli import backend_options as bo
from cai.cli.judge_options import FeedbackChatTemplateOpt, GuardCategoriesOpt, GuardTemplateOpt
from cai.shipped import prompts_dir

EXAMPLES = prompts_dir()  # the shipped examples/prompts/, packaged with cai (see cai.shipped)


def eval_command(
    model: list[str] | None = typer.Option(None, "--model", "-m", help="NAME=PATH (repeatable), e.g. "
                                           "base=default dpo=runs/x/dpo; default: base=default."),
    baseline: str | None = typer.Option(None, "--baseline", help="Model name the win rate and KL are against "
                                        "(default: the first)."),
    redteam: Path | None = typer.Option(None, "--redteam", help="Red-team prompts (harm): a JSONL/CSV/"
                                        "parquet file, datasets folder or hub id\\[:config\\[:split]], "
                                        "optionally #prompt=COLUMN."),
    lookalike: Path | None = typer.Option(None, "--lookalike", help="XSTest-format prompts with label "
                                          "safe/unsafe (over-refusal); any record source."),
    benign: Path | None = typer.Option(None, "--benign",
                                       help="Benign instructions (helpfulness); any record source."),
    limit: int | None = typer.Option(None, "--limit",
                                     help="First N prompts per set (look-alikes: N safe and N unsafe)."),
    segment_by: list[str] | None = typer.Option(None, "--segment-by", help="Also split every rate by this "
                                                "prompt-set column (repeatable), e.g. category, region, "
                                                "source; default: the red-team set's category column "
                                                "(category, SemanticCategory, risk_area); none: no split."),
    matrix_set: list[str] | None = typer.Option(None, "--matrix-set", metavar="NAME:KIND=SOURCE",
                                                help="Segmented evaluation (repeatable): a named prompt set "
                                                     "every model answers, KIND redteam or lookalike, e.g. "
                                                     "eu:redteam=examples/prompts/regions/eu/redteam.jsonl; "
                                                     "NAME=FOLDER takes the folder's redteam.jsonl and "
                                                     "lookalike.jsonl, 'shipped:regions/eu' the packaged "
                                                     "ones. Report: models x sets heatmaps."),
    truthfulqa: Path | None = typer.Option(None, "--truthfulqa", help="TruthfulQA JSONL (question, "
                                           "best_answer, correct_answers, incorrect_answers): MC1 and MC2 "
                                           "from log-probs."),
    bbq: Path | None = typer.Option(None, "--bbq", help="BBQ JSONL as published: accuracy and bias scores "
                                    "in ambiguous and disambiguated contexts, from log-probs."),
    truthfulqa_limit: int | None = typer.Option(None, "--truthfulqa-limit",
                                                help="First N TruthfulQA questions."),
    bbq_limit: int | None = typer.Option(None, "--bbq-limit",
                                         help="About N BBQ rows: the first N/categories of each category."),
    constitution: str = typer.Option("harmless", "--constitution", "-c",
                                     help="Constitution file or shipped name (the judge's principles)."),
    system_prompt: str | None = typer.Option(None, "--system-prompt",
                                             help="System prompt of the evaluated models (default: none)."),
    judge: str = typer.Option("rubric", "--judge", help="Harm judge: rubric (Yes/No on the principles, both "
                              "polarities), pairwise (A/B vs a refusal, both orders) or guard (a Llama Guard "
                              "style classifier as --feedback-model: 'safe' / 'unsafe' + category codes)."),
    guard_template: Path | None = GuardTemplateOpt,
    guard_categories: Path | None = GuardCategoriesOpt,
    feedback_chat_template: str | None = FeedbackChatTemplateOpt,
    counterfactual: str | None = typer.Option(None, "--counterfactual", metavar="PATH|shipped",
                                              help="Counterfactual demographic audit: templates JSONL "
                                                   "({id, template} with a {group} slot), or 'shipped' "
                                                   "for the packaged ones; refusal, length (and judge) "
                                                   "gaps between groups, permutation p-values."),
    counterfactual_groups: Path | None = typer.Option(None, "--counterfactual-groups",
                                                      help="Groups YAML (axis: [groups]); default: "
                                                           "groups.yaml beside the templates."),
    counterfactual_axis: list[str] | None = typer.Option(None, "--counterfactual-axis",
                                                         help="Only this axis of the groups file "
                                                              "(repeatable)."),
    counterfactual_judge: bool = typer.Option(False, "--counterfactual-judge",
                                              help="Also score the counterfactual answers with the harm "
                                                   "judge (p(harmful) per group)."),
    best_of_n: str | None = typer.Option(None, "--best-of-n", metavar="N,N,...",
                                         help="Reward over-optimization: best-of-n against "
                                              "--preference-model for these n, e.g. 1,2,4,8,16."),
    bon_model: str | None = typer.Option(None, "--bon-model",
                                         help="Model name sampled for best-of-n (default: the baseline)."),
    bon_set: str = typer.Option("benign", "--bon-set", help="Prompt set of best-of-n: benign or redteam."),
    bon_limit: int = typer.Option(16, "--bon-limit", help="Best-of-n: first N prompts of the set."),
    bon_temperature: float = typer.Option(1.0, "--bon-temperature", help="Best-of-n sampling temperature."),
    gold_pm: Path | None = typer.Option(None, "--gold-pm",
                                        help="Best-of-n gold score: a second `cai train rm` dir trained "
                                             "on other data (default: the harm judge, 1 - p_harmful)."),
    checkpoints: Path | None = typer.Option(None, "--checkpoints",
                                            help="Best-of-n plot: JSONL of {name, step, kl, proxy, gold} "
                                                 "training checkpoints (measured KL)."),
    pm_probes: bool = typer.Option(False, "--pm-probes/--no-pm-probes",
                                   help="Preference-model failure probes: controlled edits (filler, "
                                        "flattery, refusal) and the favourites the judges flag."),
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
    win rate against a baseline, reward-hacking probes, TruthfulQA MC1/MC2 and BBQ bias scores
    (--truthfulqa, --bbq), a counterfactual demographic audit (--counterfactual), a guard-model harm judge
    (--judge guard), best-of-n reward over-optimization (--best-of-n) and preference-model failure probes
    (--pm-probes); writes eval.json, report.md and report.html.

    Without prompt-set or benchmark options the shipped examples/prompts files are used (packaged with cai).
    """
    from cai.cli.logs import setup_logging
    from cai.eval.compare import COMPARISON_LEGEND, format_comparison_table, regressions
    from cai.eval.matrix import matrix_from_options
    from cai.eval.report import judge_lines
    from cai.eval.run import evaluate

    setup_logging(output)
    if spec is not None:
        from cai.eval.spec import load_spec

        the_spec = load_spec(spec)
        if limit is not None:
            the_spec = the_spec.model_copy(update={"limit": limit})
        if segment_by:
            the_spec = the_spec.model_copy(update={"segment_by": segment_columns(segment_by)})
        if matrix_set:
            the_spec = the_spec.model_copy(update={"matrix": matrix_from_options(matrix_set)})
    else:
        the_spec = spec_from_options(
            model=model or ["base=default"], baseline=baseline, redteam=redteam, lookalike=lookalike,
            benign=benign, limit=limit, segment_by=segment_columns(segment_by), constitution=constitution,
            matrix=matrix_from_options(matrix_set),
            system_prompt=system_prompt, judge=judge,
            feedback_model=feedback_model, feedback_backend=feedback_backend,
            feedback_base_urls=feedback_base_url or [], feedback_batch_size=feedback_batch_size,
            few_shot=few_shot, preference_model=preference_model, curves=curves or [], audit=audit,
            judge_audit=judge_audit, refusal_audit=refusal_audit, samples=samples,
            max_new_tokens=max_new_tokens, truthfulqa=truthfulqa, bbq=bbq,
            truthfulqa_limit=truthfulqa_limit, bbq_limit=bbq_limit,
            guard_template=guard_template, guard_categories=guard_categories,
            feedback_chat_template=feedback_chat_template, counterfactual=counterfactual,
            counterfactual_groups=counterfactual_groups, counterfactual_axes=counterfactual_axis or None,
            counterfactual_judge=counterfactual_judge, best_of_n=int_list(best_of_n, "--best-of-n"),
            bon_model=bon_model, bon_set=bon_set, bon_limit=bon_limit, bon_temperature=bon_temperature,
            gold_preference_model=gold_pm, checkpoints=checkpoints, pm_probes=pm_probes,
            seed=seed, backend=backend, base_urls=base_url or [], api_key_env=api_key_env,
            batch_size=batch_size, device=device, dtype=dtype,
        )
    summary = evaluate(the_spec, output)
    print(results_table(summary))
    print("\n" + "\n".join(judge_lines(summary)))
    for block in study_blocks(summary):
        print("\n" + block)
    if len(summary.models) > 1:
        print(f"\n{COMPARISON_LEGEND}:\n{format_comparison_table(summary)}")
    print(f"\nreport: {output / 'report.html'} (and report.md, eval.json; answers and judgements "
          f"in {output})")
    exit_on_regressions(regressions(summary) if fail_on_regression else [])


def segment_columns(options: list[str] | None) -> list[str] | None:
    """``--segment-by`` values as the spec's ``segment_by``: None when not given (the default column),
    ``[]`` for ``none``.

    >>> segment_columns(None), segment_columns(["none"]), segment_columns(["region", "source"])
    (None, [], ['region', 'source'])
    """
    if not options:
        return None
    return [] if [o.strip().lower() for o in options] == ["none"] else list(options)


def int_list(text: str | None, option: str) -> list[int] | None:
    """A comma-separated list of whole numbers (``--best-of-n 1,2,4``); a bad item is one line.

    >>> int_list("1, 2,4", "--best-of-n"), int_list(None, "--best-of-n")
    ([1, 2, 4], None)
    >>> int_list("1,x", "--n")
    Traceback (most recent call last):
    cai.core.errors.CaiError: --n '1,x': 'x' is not a whole number (fix: e.g. --n 1,2,4,8,16)
    """
    from cai.core.errors import CaiError

    if text is None:
        return None
    out = []
    for item in text.split(","):
        try:
            out.append(int(item.strip()))
        except ValueError:
            raise CaiError(f"{option} {text!r}: {item.strip()!r} is not a whole number",
                           hint=f"e.g. {option} 1,2,4,8,16") from None
    return out


def study_blocks(summary) -> list[str]:
    """The studies' console output: the guard's reads, the counterfactual disparities, the best-of-n table
    and the preference-model probes (each only when run)."""
    out = []
    for m in summary.models:
        if m.guard is not None:
            g = m.guard
            out.append(f"guard judge on {m.name}: {g['unsafe']} unsafe, {g['safe']} safe, {g['failed']} not "
                       f"parsed of {g['n']}")
    for m in summary.models:
        if m.counterfactual is not None:
            c = m.counterfactual
            out.append(f"counterfactual audit of {m.name} ({c.templates} templates, {c.answers} answers, "
                       f"{c.tests} tests): disparities: {'; '.join(c.disparities) or 'none found'}")
    if summary.overoptimization is not None:
        from cai.eval.overoptimization_report import overoptimization_text

        out.append("reward over-optimization (best-of-n):\n"
                   + overoptimization_text(summary.overoptimization))
    if summary.pm_probes is not None:
        from cai.eval.pm_probes_report import format_pm_probes

        out.append(format_pm_probes(summary.pm_probes))
    if summary.matrix:  # the segmented evaluation (cai/eval/report_matrix.py)
        from cai.eval.report_matrix import matrix_text

        out.append(matrix_text(summary))
    return out


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
    from cai.eval.spec import SECTIONS, EvalSpec, field_of, parse_model_option

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
    if all(fields.get(k) is None for k in SECTIONS):
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
