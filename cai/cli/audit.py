"""(being written)"""

import typer

app = typer.Typer(help="Audit the AI labeler against human labels.", no_args_is_help=True)
