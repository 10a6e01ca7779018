"""`cai export`: SFT and preference JSONL to parquet splits with a dataset card, as the hub lays them out."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.core.errors import CaiError


def export(
    sft: list[Path] | None = typer.Option(
        None, "--sft", help="Prompt/completion JSONL (TRL format, with id and provenance). Repeatable."
    ),
    prefs: list[Path] | None = typer.Option(
        None, "--prefs", help="Preference-pair JSONL (prompt/chosen/rejected). Repeatable."
    ),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Required. Folder to write data/*.parquet and README.md to."),
    out: Path | None = typer.Option(None, "--out", hidden=True, help="Old spelling of --output."),
    test_fraction: float = typer.Option(
        0.1, "--test-fraction", help="Share of ids held out for test splits."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the hash split by id."),
    license: str | None = typer.Option(None, "--license",
                                       help="Licence for the dataset card (e.g. cc-by-4.0)."),
) -> None:
    """Export JSONL records as parquet splits train_sft/test_sft, train_prefs/test_prefs, with a dataset card.

    The split is by a hash of (seed, id), so a record keeps its split as data grows.
    Load the result with ``datasets.load_dataset(OUT)``, or upload the folder to the hub as a dataset repo.
    """
    from cai.stages.export import to_dataset
    from cai.stages.export_files import is_export, write_export

    if not sft and not prefs:
        raise CaiError("nothing to export", hint="pass --sft FILE, --prefs FILE, or both")
    out = output or out
    if out is None:
        raise CaiError("cai export needs --output DIR", hint="e.g. -o runs/export")
    if out.exists() and not out.is_dir():
        raise CaiError(f"{out}: exists and is a file", hint="give -o a folder path")
    if out.is_dir() and any(out.iterdir()) and not is_export(out):
        raise CaiError(f"{out}: folder is not empty and holds no earlier export",
                       hint="choose a new -o folder, or empty this one")
    dd = to_dataset(sft=sft or None, prefs=prefs or None, test_fraction=test_fraction, seed=seed)
    write_export(dd, out, license=license)
    for name, split in dd.items():
        typer.echo(f"{name}: {split.num_rows} rows" + ("" if split.num_rows else " (empty: left out)"))
    typer.echo(f"wrote {out} (load with datasets.load_dataset({str(out.resolve())!r}))")
