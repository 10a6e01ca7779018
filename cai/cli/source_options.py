"""Help text and the ``--columns`` option shared by every option that reads records (see cai.sources)."""

from __future__ import annotations

import typer

# "\\[" so that rich does not read [...] as markup
FORMS = ("A .jsonl/.json/.csv/.parquet file, a datasets folder, or a hub id, as "
         "LOCATION\\[:CONFIG\\[:SPLIT]], optionally #FIELD=COLUMN,... (README: Input forms).")

ColumnsOpt = typer.Option(None, "--columns", help="Column mapping of the main record input, FIELD=COLUMN,... "
                          "(e.g. prompt=question); the same as appending #FIELD=COLUMN,... to it.")


def mapped(source: str | None, columns: str | None) -> str | None:
    """The source with ``--columns`` attached (None stays None).

    >>> mapped("q.csv", "prompt=question"), mapped(None, "prompt=q"), mapped("q.csv", None)
    ('q.csv#prompt=question', None, 'q.csv')
    """
    if source is None:
        return None
    from cai.sources.spec import with_columns

    return with_columns(source, columns)
