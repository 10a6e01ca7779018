"""`cai audit refusal`: the refusal detector (and XSTest's prefix baseline) against human refusal labels."""

from __future__ import annotations

from pathlib import Path

import typer


def refusal(
    data: Path = typer.Option(..., "--data", "-d", help="Labelled answers JSONL: prompt, completion, label "
                              "(compliance/refusal/partial); optional model, type, prompt_label."),
    output: Path = typer.Option(Path("runs/audit-refusal"), "--output", "-o",
                                help="Folder for audit.json and decisions.jsonl (one line per answer)."),
) -> None:
    """Measure the refusal detector against human labels, beside XSTest's prefix match."""
    import logging

    from cai.audit.refusal import format_refusal_audit, run_refusal_audit
    from cai.cli.logs import setup_logging

    setup_logging(output)
    audit = run_refusal_audit(data, output)
    print(format_refusal_audit(audit))
    logging.getLogger("cai.audit.refusal").info("wrote %s and %s", output / "audit.json",
                                                output / "decisions.jsonl")
