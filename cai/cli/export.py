"""`cai export`: SFT and preference JSONL to a ``datasets`` DatasetDict on disk."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.core.errors import CaiError


def _check_out_dir(out: Path) -> None:
    """Refuse to write over a file, or over a non-empty folder that is not an earlier export."""
    if out.exists() and not out.is_dir():
        raise CaiError(f"{out}: exists and is a file", hint="give -o a folder path")
    if out.is_dir() and any(out.iterdir()) and not (out / "dataset_dict.json").exists():
        raise CaiError(
            f"{out}: folder is not empty and holds no earlier export",
            hint="choose a new -o folder, or empty this one",
        )


def export(
    sft: list[Path] | None = typer.Option(
        None, "--sft", help="Prompt/completion JSONL (TRL format, with id and provenance). Repeatable."
    ),
    prefs: list[Path] | None = typer.Option(
        None, "--prefs", help="Preference-pair JSONL (prompt/chosen/rejected). Repeatable."
    ),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Required. Folder to save the DatasetDict to (save_to_disk)."),
    out: Path | None = typer.Option(None, "--out", hidden=True, help="Old spelling of --output."),
    test_fraction: float = typer.Option(
        0.1, "--test-fraction", help="Share of ids held out for test splits."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the hash split by id."),
) -> None:
    """Export JSONL records to a datasets DatasetDict (train_sft/test_sft, train_prefs/test_prefs).

    The split is by a hash of (seed, id), so a record keeps its split as data grows.
    Load the result with ``datasets.load_from_disk(OUT)``.
    """
    from cai.stages.export import to_dataset

    if not sft and not prefs:
        raise CaiError("nothing to export", hint="pass --sft FILE, --prefs FILE, or both")
    out = output or out
    if out is None:
        raise CaiError("cai export needs --output DIR", hint="e.g. -o runs/export")
    _check_out_dir(out)
    dd = to_dataset(sft=sft or None, prefs=prefs or None, test_fraction=test_fraction, seed=seed)
    dd.save_to_disk(str(out))
    for name, split in dd.items():
        typer.echo(f"{name}: {split.num_rows} rows")
    typer.echo(f"saved to {out} (load with datasets.load_from_disk({str(out)!r}))")
