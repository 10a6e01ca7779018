"""`cai audit pools`: annotator pools against each other and the AI labeler, and the weight each gets."""

from __future__ import annotations

from pathlib import Path

import typer


def pools(
    human: list[Path] = typer.Option(..., "--human", help="Human preference JSONL (prompt/chosen/rejected "
                                     "and pool), repeatable."),
    labels: Path | None = typer.Option(None, "--labels", help="AI labels of the same pairs (labels.jsonl, "
                                       "e.g. of `cai audit labeler --data HUMANFILE`)."),
    balance: str | None = typer.Option(None, "--balance", help="equal: every pool weighs the same in total."),
    pool_weight: list[str] | None = typer.Option(None, "--pool-weight", help="NAME=WEIGHT per pool, "
                                                 "repeatable (with --balance equal: the pool's share)."),
    show: int = typer.Option(10, "--show", help="How many disagreeing pairs to print (audit.json has all)."),
    output: Path = typer.Option(Path("runs/audit-pools"), "--output", "-o", help="Folder for audit.json."),
) -> None:
    """Per pool: agreement with the other pools and the AI labeler, the pairs they disagree on, its weight."""
    import logging

    from pydantic import ValidationError

    from cai.audit.pools import format_pools_audit, run_pools_audit
    from cai.cli.logs import setup_logging
    from cai.core.errors import CaiError
    from cai.stages.label.pools import PoolWeighting, parse_pool_weights

    setup_logging(output)
    try:
        weighting = PoolWeighting(pools=parse_pool_weights(pool_weight or []), balance=balance)
    except ValidationError:
        raise CaiError(f"--balance {balance!r} is not known", hint="use --balance equal, or leave it out") \
            from None
    audit = run_pools_audit(human, output, labels=labels, weighting=weighting)
    print(format_pools_audit(audit, show=show))
    logging.getLogger("cai.audit.pools").info("wrote %s", output / "audit.json")
