"""`cai run RECIPE.yaml`: the whole pipeline from one recipe, unchanged stages skipped.

Prints ``stage k/n: NAME ... running`` / ``ran (time, outputs)`` / ``skipped``
for every stage, then a summary table and the before/after table of the eval
stage. ``--dry-run`` validates the recipe and prints the plan only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def _short(outputs: dict[str, Any]) -> str:
    """The scalar outputs of a stage, briefly.

    >>> _short({"sft": "critique/sft.jsonl", "sft_rows": 40, "revised_pct": 92.5, "signal": "no", "x": []})
    'sft_rows=40, revised_pct=92.5, signal=no'
    """
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    keep = [f"{k}={fmt(v)}" for k, v in outputs.items()
            if (isinstance(v, (int, float)) and not isinstance(v, bool))
            or (isinstance(v, str) and len(v) <= 8)]
    return ", ".join(keep[:5])


def summary_table(results: list[Any]) -> str:
    """One line per stage: name, status, seconds, key, outputs.

    >>> from cai.run.engine import StageResult
    >>> print(summary_table([StageResult("split", "skipped", "abc", 0.12, {"n": 3})]))
    stage  status   time   key  outputs
    split  skipped  0.1 s  abc  n=3
    """
    head = ["stage", "status", "time", "key", "outputs"]
    rows = [[r.name, r.status, f"{r.seconds:.1f} s", r.key or "-", _short(r.outputs)] for r in results]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head, *rows])


def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML, or a shipped recipe's name (quickstart, "
                                  "regions...: examples/recipes/)."),
    start: str | None = typer.Option(None, "--from",
                                     help="Start at this stage (earlier stages must have finished)."),
    stop: str | None = typer.Option(None, "--until", help="Stop after this stage."),
    force: list[str] | None = typer.Option(None, "--force",
                                           help="Re-run this stage even if unchanged (repeatable)."),
    push_to_hub: bool = typer.Option(False, "--push-to-hub", help="Push datasets and models with cards "
                                     "(offline: stage them in RUN_DIR/hub/ only)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run directory (default: the recipe's "
                                        "run_dir, else runs/<name>)."),
    variant: str | None = typer.Option(None, "--variant",
                                       help="Only this variant of a recipe with variants."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate the recipe and print each stage's plan "
                                 "(would run / would skip)."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression",
                                            help="Exit with code 1 when a trained model is detectably worse "
                                                 "than the baseline on the constitution's aim."),
    train_argv: str | None = typer.Option(None, "--train-argv", metavar="STAGE",
                                          help="Print the `cai train ...` arguments of this training stage "
                                               "(sft, rm, policy), from the finished stages before it, for "
                                               "your own launcher (examples/slurm/); trains nothing."),
    mark_trained: str | None = typer.Option(None, "--mark-trained", metavar="STAGE",
                                            help="Record this training stage as done from the model the "
                                                 "--train-argv command wrote; `cai run` goes on after it."),
) -> None:
    """Run a recipe: critique -> SFT -> answers -> AI labels -> preference model -> DPO/PPO -> eval, in one
    run dir."""
    import time

    from cai.cli.eval import exit_on_regressions
    from cai.cli.logs import log_to, setup_logging, to_file
    from cai.core.errors import CaiError
    from cai.eval.compare import COMPARISON_LEGEND, format_comparison_table, read_summary, regressions
    from cai.run.engine import RunContext, plan, run_pipeline, select
    from cai.run.hub import check_push
    from cai.run.hub import push_to_hub as push
    from cai.run.load import load_recipe
    from cai.run.registry import build_stages
    from cai.run.train_stages import check_trainer_configs
    from cai.shipped import find_recipe

    setup_logging()
    loaded = load_recipe(find_recipe(recipe), run_dir=run_dir, variant=variant)
    built = [(item, build_stages(item.recipe)) for item in loaded]
    for _item, stages in built:  # every name is checked before any work
        select(stages, start, stop)
        unknown = [f for f in force or [] if f not in [s.name for s in stages]]
        if unknown:
            raise CaiError(f"--force {unknown[0]}: no such stage",
                           hint=f"use one of: {', '.join(s.name for s in stages)}")
    if train_argv or mark_trained:  # one training stage run outside: cai.run.external
        _external(built, train_argv, mark_trained)
        return
    modes = {item.run_dir: check_push(item.recipe) for item, _ in built} if push_to_hub else {}
    for item, _ in built:  # a dry run checks the keys, not this machine's GPUs; a real run checks both
        check_trainer_configs(item.recipe, hardware=not dry_run)
    summaries: list[Any] = []
    prefixes: list[str] = []
    t0 = time.perf_counter()
    for item, stages in built:
        label = f"{item.recipe.name}" + (f" (variant {item.variant})" if item.variant else "")
        if not dry_run:
            log_to(item.run_dir)  # run_dir/cai.log: the stage lines, tables and warnings of every run

        def say(line: str) -> None:
            typer.echo(line)
            to_file(line, "cai.run")

        say(f"== {label}: {len(stages)} stages in {item.run_dir}")
        if dry_run:
            results = plan(stages, RunContext(item.run_dir), start=start, stop=stop, force=force or ())
            for k, r in enumerate(results, 1):
                typer.echo(f"stage {k}/{len(results)}: {r.name} ... {r.status}"
                           + (f" (key {r.key})" if r.key else ""))
            continue
        n = len(stages)
        index = {s.name: k for k, s in enumerate(stages, 1)}

        def on_event(event: str, r: Any, n: int = n, index: dict = index, say: Any = say) -> None:
            head = f"stage {index[r.name]}/{n}: {r.name} ..."
            if event == "start":
                say(f"{head} running")
            elif event == "done":
                say(f"{head} ran ({r.seconds:.1f} s{', ' + _short(r.outputs) if _short(r.outputs) else ''})")
            elif event == "skip":
                say(f"{head} skipped (unchanged; ran in {r.seconds:.1f} s before)")

        ctx = RunContext(item.run_dir)
        results = run_pipeline(stages, ctx, start=start, stop=stop, force=force or (), on_event=on_event)
        say("\n" + summary_table(results))
        summary = read_summary(item.run_dir / ctx.outputs["eval"]["eval"]) if "eval" in ctx.outputs else None
        if summary is not None:
            summaries.append(summary)
            prefixes.append(f"{item.variant}/" if item.variant else "")
        if "eval" in ctx.outputs:
            say(f"report: {item.run_dir / ctx.outputs['eval']['report']}")
        if push_to_hub:
            for line in push(item.recipe, item.run_dir, ctx.outputs, modes[item.run_dir]):
                typer.echo(line)
    if summaries:
        table = (f"\nbefore/after on held-out prompts ({COMPARISON_LEGEND}):\n"
                 + format_comparison_table(summaries, prefixes=prefixes))
        from cai.eval.report_matrix import matrix_text

        for s in summaries:  # a regional run's models x prompt sets (cai/eval/matrix.py)
            if s.matrix:
                table += "\n\n" + matrix_text(s)
        typer.echo(table)
        to_file(table, "cai.run")
    if not dry_run:
        typer.echo(f"\ndone in {time.perf_counter() - t0:.1f} s")
    exit_on_regressions(regressions(summaries) if fail_on_regression and summaries else [])


def _external(built: list[Any], train_argv: str | None, mark_trained: str | None) -> None:
    """``--train-argv STAGE`` (print the stage's arguments, shell-quoted) or ``--mark-trained STAGE``."""
    import shlex

    from cai.core.errors import CaiError
    from cai.run import external
    from cai.run.train_stages import check_trainer_configs

    if train_argv and mark_trained:
        raise CaiError("--train-argv and --mark-trained go in two steps", hint="give one of them")
    if len(built) != 1:
        raise CaiError("--train-argv/--mark-trained: this recipe has variants",
                       hint="pick one with --variant")
    item, stages = built[0]
    check_trainer_configs(item.recipe, hardware=False)  # the training runs on other machines
    if train_argv:
        typer.echo(shlex.join(external.train_argv(item.recipe, stages, item.run_dir, train_argv)))
        return
    assert mark_trained is not None
    outputs = external.mark_trained(item.recipe, stages, item.run_dir, mark_trained)
    typer.echo(f"{mark_trained}: marked done ({_short(outputs) or outputs['model']}); "
               "`cai run` goes on after it")
