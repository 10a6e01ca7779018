"""`cai constitution ...` (placeholder, being written)."""
import typer

app = typer.Typer(help="Validate, show, diff and import constitutions.", no_args_is_help=True)
