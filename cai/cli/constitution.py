"""``cai constitution ...``: validate, show, diff and import constitutions.

This module is imported by ``cai --help``, so pydantic and yaml are imported
inside the commands only.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from cai.constitution.schema import Constitution, ConstitutionDiff

app = typer.Typer(help="Validate, show, diff and import constitutions.", no_args_is_help=True)


class Format(str, Enum):
    anthropic = "anthropic"
    llm_swarm = "llm-swarm"


def expand_paths(paths: list[str]) -> list[str]:
    """Files as given; directories become their ``*.yaml``/``*.yml`` files, sorted.

    >>> expand_paths(["harmless"])
    ['harmless']
    """
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file())
            out.extend(str(f) for f in found) if found else out.append(p)
        else:
            out.append(p)
    return out


def summary(c: Constitution) -> str:
    """``name vversion, N principles, hash <first 12>``."""
    return f"{c.name} v{c.version}, {len(c.principles)} principles, hash {c.hash[:12]}"


@app.command()
def validate(
    paths: list[str] = typer.Argument(
        ..., help="Constitution files, folders (searched for *.yaml) or shipped names."
    ),
) -> None:
    """Check constitutions: one 'ok' line per good file, one 'file:line: field: message' line per bad one."""
    from cai.constitution.load import load_constitution
    from cai.core.errors import CaiError

    failed = 0
    for p in expand_paths(paths):
        if Path(p).is_dir():
            typer.echo(f"{p}: no .yaml or .yml files found")
            failed += 1
            continue
        try:
            c = load_constitution(p)
        except CaiError as e:
            typer.echo(str(e))
            failed += 1
        else:
            typer.echo(f"ok {p} ({summary(c)})")
    if failed:
        raise typer.Exit(1)


@app.command()
def show(path: str = typer.Argument(..., help="A constitution file or shipped name.")) -> None:
    """Print the resolved constitution (extends applied) as YAML, with its hash."""
    from cai.constitution.load import load_constitution

    c = load_constitution(path)
    typer.echo(c.to_yaml(), nl=False)
    typer.echo(f"# hash: sha256:{c.hash}")


def _short(value: Any, width: int = 70) -> str:
    """A value on one line, cut to ``width`` characters.

    >>> _short("a" * 100, 10)
    "'aaaaaaa…'"
    >>> _short(1.0)
    '1.0'
    """
    text = repr(value) if not isinstance(value, str) else repr(" ".join(value.split()))
    return text if len(text) <= width else text[: width - 2] + "…'"


def _values(c: Constitution, key: str) -> Any:
    value = getattr(c, key)
    return f"{len(value)} items" if isinstance(value, list) else value


def render_diff(a: Constitution, b: Constitution, d: ConstitutionDiff, names: tuple[str, str]) -> list[str]:
    """Readable lines for a principle-level diff."""
    lines = [f"--- {names[0]} ({summary(a)})", f"+++ {names[1]} ({summary(b)})"]
    if d.empty:
        return [*lines, "no differences"]
    for key in d.fields:
        lines.append(f"~ {key}: {_short(_values(a, key))} -> {_short(_values(b, key))}")
    lines += [f"+ principle {pid}" for pid in d.added]
    lines += [f"- principle {pid}" for pid in d.removed]
    for pid, keys in d.changed.items():
        lines.append(f"~ principle {pid}")
        old, new = a.principle(pid), b.principle(pid)
        lines += [f"    {k}: {_short(getattr(old, k))} -> {_short(getattr(new, k))}" for k in keys]
    if d.reordered:
        lines.append("~ principle order changed")
    return lines


@app.command()
def diff(
    a: str = typer.Argument(..., help="The old constitution (file or shipped name)."),
    b: str = typer.Argument(..., help="The new constitution (file or shipped name)."),
) -> None:
    """Show added, removed and changed principles and changed top-level fields from A to B."""
    from cai.constitution.load import load_constitution
    from cai.constitution.schema import diff_constitutions

    ca, cb = load_constitution(a), load_constitution(b)
    typer.echo("\n".join(render_diff(ca, cb, diff_constitutions(ca, cb), (a, b))))


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="The file to convert (JSON)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the constitution YAML."),
    fmt: Format | None = typer.Option(
        None, "--format", help="Input format; guessed from the file when left out."
    ),
    few_shot: Path | None = typer.Option(
        None, "--few-shot", help="anthropic: CritiqueRevisionFewShotPrompts.json, parsed into examples."
    ),
    comparisons: Path | None = typer.Option(
        None,
        "--comparisons",
        help="anthropic: RLMadisonInstructions.json, paired with principles by position.",
    ),
    feedback_few_shot: Path | None = typer.Option(
        None,
        "--feedback-few-shot",
        help="anthropic: RLMadisonFewShotPrompts.json, parsed into feedback examples.",
    ),
    name: str | None = typer.Option(None, "--name", help="The constitution's name."),
) -> None:
    """Convert the Constitutional AI paper's files or llm-swarm's JSON into a constitution YAML."""
    from cai.constitution.importers import detect_format, import_anthropic, import_llm_swarm, read_json
    from cai.constitution.load import load_constitution
    from cai.core.errors import CaiError

    kind = fmt.value if fmt else detect_format(read_json(file))
    if kind is None:
        raise CaiError(
            f"{file}: cannot tell the format", hint="pass --format anthropic or --format llm-swarm"
        )
    if kind == "anthropic":
        result = import_anthropic(
            file, few_shot, comparisons=comparisons, feedback_few_shot=feedback_few_shot, name=name
        )
    else:
        if few_shot or comparisons or feedback_few_shot:
            raise CaiError("--few-shot, --comparisons and --feedback-few-shot go with --format anthropic")
        result = import_llm_swarm(file, name=name)
    c = result.constitution
    header = f"# Imported from {file.name} by `cai constitution import --format {kind}`.\n"
    try:
        output.write_text(header + c.to_yaml(), encoding="utf-8")
    except OSError as e:
        raise CaiError(f"{output}: cannot write: {e.strerror}") from None
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    check = load_constitution(output)
    typer.echo(
        f"wrote {output} ({summary(check)}, {len(c.examples)} examples, {len(c.feedback_examples)} "
        f"feedback examples)"
    )
