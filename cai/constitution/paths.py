"""Where constitutions live: files as given, or the shipped ones by name (``harmless``, ``regions/eu``)."""

from __future__ import annotations

from pathlib import Path

from cai.core.errors import CaiError
from cai.shipped import constitutions_dir

SHIPPED_DIR = constitutions_dir()  # the project's constitutions/, packaged with cai (see cai.shipped)


def display_path(path: Path) -> str:
    """``path`` relative to the working folder when inside it, for messages."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def candidate_paths(ref: str, folders: list[Path]) -> list[Path]:
    """Where ``ref`` may live in ``folders``, in order (``.yaml``/``.yml`` added unless given)."""
    names = [ref] if ref.endswith((".yaml", ".yml")) else [f"{ref}.yaml", f"{ref}.yml"]
    return [folder / name for folder in folders for name in names]


def shipped_names() -> list[str]:
    """Names of the constitutions shipped in ``constitutions/`` (``harmless``, ``regions/eu``...)."""
    return sorted(str(p.relative_to(SHIPPED_DIR).with_suffix("")) for p in SHIPPED_DIR.rglob("*.yaml"))


def find_constitution(path_or_name: str | Path) -> Path:
    """A file path as given, else a shipped constitution by name (``harmless``, ``regions/eu``).

    >>> find_constitution("regions/eu") == SHIPPED_DIR / "regions" / "eu.yaml"
    True
    >>> find_constitution(Path("harmless")) == SHIPPED_DIR / "harmless.yaml"  # as typer passes ``-c``
    True
    """
    path = Path(path_or_name)
    if path.exists():
        return path
    if not path.is_absolute():  # a str or a Path (typer gives ``-c harmless`` as Path("harmless"))
        for candidate in candidate_paths(str(path_or_name), [Path.cwd(), SHIPPED_DIR]):
            if candidate.is_file():
                return candidate
    names = ", ".join(shipped_names()) or "none"
    raise CaiError(f"{path_or_name}: file not found", hint=f"give a .yaml path or a shipped name ({names})")
