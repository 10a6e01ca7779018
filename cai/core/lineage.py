"""Lineage for Hugging Face cards: a model's hub id and licence, data hub ids, constitutions' YAML.

Cards name the base model by hub id (``base_model``), never by a local path or
cai's ``default`` alias. :func:`hub_base_model` finds the hub id behind a model
name: ``default`` is SmolLM2-135M-Instruct; a hub id is itself; a local folder
gives the ``_name_or_path`` of its ``config.json`` or the ``base_model`` of its
own card when that is a hub id; anything else gives ``None`` (the card then
leaves ``base_model`` out). Nothing here touches the network.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_LICENSE = "apache-2.0"  # SmolLM2-135M-Instruct's licence
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def is_hub_id(name: Any) -> bool:
    """Whether ``name`` reads as a hub repo id (``org/name`` or a bare legacy name) rather than a path.

    >>> is_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct"), is_hub_id("gpt2"), is_hub_id("default")
    (True, True, False)
    >>> is_hub_id("/tmp/model"), is_hub_id("runs/a/model"), is_hub_id("./m"), is_hub_id(None)
    (False, False, False, False)
    """
    if not isinstance(name, str) or name.strip().lower() in ("default", "smollm2-135m"):
        return False
    return bool(_HUB_ID.match(name)) and not name.endswith((".jsonl", ".json", ".parquet", ".csv"))


def _local_card(folder: Path) -> dict[str, Any]:
    """The YAML front matter of ``folder/README.md`` as a dict (empty when there is none)."""
    card = folder / "README.md"
    if not card.is_file():
        return {}
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(card).data.to_dict()
    except Exception:  # a README that is not a card
        return {}


def _first_hub_id(value: Any) -> str | None:
    """``value`` (a string or a list of them) as one hub id; cai's old ``default`` is the default model.

    >>> _first_hub_id(["org/a", "org/b"]), _first_hub_id("default"), _first_hub_id("/x")
    ('org/a', 'HuggingFaceTB/SmolLM2-135M-Instruct', None)
    """
    from cai.backends.hf.loading import DEFAULT_HUB_ID, is_default

    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, str) and is_default(value):
        return DEFAULT_HUB_ID
    return value if is_hub_id(value) else None


def _is_default_cache(path: Path) -> bool:
    from cai.backends.hf.loading import default_model_cache

    try:
        return path.resolve() == default_model_cache().resolve()
    except OSError:
        return False


def hub_base_model(name: str | os.PathLike | None) -> str | None:
    """The hub id of the model ``name`` stands for, or ``None`` when it has none (see the module doc).

    >>> hub_base_model("default"), hub_base_model("org/model"), hub_base_model("/no/such/folder")
    ('HuggingFaceTB/SmolLM2-135M-Instruct', 'org/model', None)
    """
    from cai.backends.hf.loading import DEFAULT_HUB_ID, is_default

    if name is None:
        return None
    text = os.fspath(name)
    if is_default(text):
        return DEFAULT_HUB_ID
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        if _is_default_cache(path):
            return DEFAULT_HUB_ID
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        own = _first_hub_id(config.get("_name_or_path")) if isinstance(config, dict) else None
        return own or _first_hub_id(_local_card(path).get("base_model"))
    return text if not path.exists() and is_hub_id(text) else None


def model_license(name: str | os.PathLike | None) -> str | None:
    """The licence of the model ``name``: the default model's, a local folder's card's, a cached hub card's.

    >>> model_license("default"), model_license("/no/such/folder")
    ('apache-2.0', None)
    """
    from cai.backends.hf.loading import is_default

    if name is None:
        return None
    text = os.fspath(name)
    path = Path(os.path.expanduser(text))
    if is_default(text) or (path.is_dir() and _is_default_cache(path)):
        return DEFAULT_LICENSE
    if path.is_dir():
        found = _local_card(path).get("license")
        return found if isinstance(found, str) else None
    if not is_hub_id(text):
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(text, "README.md")  # the hub's card if downloaded before; no network
    found = _local_card(Path(cached).parent).get("license") if isinstance(cached, str) else None
    return found if isinstance(found, str) else None


def hub_dataset_id(source: str | os.PathLike) -> str | None:
    """The hub dataset id of a source string (``org/name[:config[:split]][#mapping]``, see
    :mod:`cai.sources.spec`), else ``None``. A file or folder that exists is local, whatever its name.

    >>> hub_dataset_id("Anthropic/hh-rlhf:harmless-base:test#prompt=q"), hub_dataset_id("runs/x/p.jsonl")
    ('Anthropic/hh-rlhf', None)
    """
    text = os.fspath(source)
    if os.path.exists(text):
        return None
    repo = text.split("#", 1)[0].split(":", 1)[0]
    return repo if "/" in repo and is_hub_id(repo) else None


def constitution_refs(provenances: Iterable[Any]) -> list[dict[str, str]]:
    """Distinct ``{name, version, hash}`` of the constitutions named in provenance dicts, sorted.

    >>> constitution_refs([{"constitution": {"name": "c", "version": "1", "hash": "ab"}}, None, {},
    ...                    {"constitution": {"name": "c", "version": "1", "hash": "ab"}}])
    [{'name': 'c', 'version': '1', 'hash': 'ab'}]
    """
    seen = set()
    for prov in provenances:
        const = prov.get("constitution") if isinstance(prov, dict) else None
        if isinstance(const, dict):
            seen.add((str(const.get("name")), str(const.get("version")), str(const.get("hash"))))
    return [{"name": n, "version": v, "hash": h} for n, v, h in sorted(seen)]


@functools.lru_cache(maxsize=1)
def _shipped_by_hash() -> dict[str, str]:
    """hash -> YAML of every shipped constitution that loads."""
    from cai.constitution.load import load_constitution
    from cai.constitution.paths import shipped_names

    out = {}
    for name in shipped_names():
        try:
            const = load_constitution(name)
        except Exception:  # a shipped file that does not load names nothing
            continue
        out[const.hash] = const.to_yaml()
    return out


def constitution_yaml(ref: dict[str, str]) -> str | None:
    """The YAML of the shipped constitution with this hash (``None`` when no shipped one matches).

    >>> from cai.constitution.load import load_constitution
    >>> c = load_constitution("harmless")
    >>> constitution_yaml({"hash": c.hash}) == c.to_yaml(), constitution_yaml({"hash": "0" * 64})
    (True, None)
    """
    return _shipped_by_hash().get(str(ref.get("hash")))
