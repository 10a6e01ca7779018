"""The model card (``README.md``) a training run leaves in its output directory.

A ``huggingface_hub.ModelCard`` whose metadata the hub reads: ``base_model`` as a
hub id where one is known (:func:`cai.core.lineage.hub_base_model`; left out for
a local model without one, never a path), ``datasets`` (the training data's hub
ids, where it came from the hub), ``license`` (the base model's), ``tags``,
``pipeline_tag`` and the constitution(s) (name, version, hash) read from the
records' provenance. The body names each data file with its sha256, record count
and label sources; each constitution, with its YAML when a shipped one has that
hash; the labeler audit summary when an ``audit.json`` sits beside a preference
file or is passed with ``--audit``; the config (fields changed from the trainer's
defaults); and the final metrics. The same facts go to ``cai_card.json`` for
programs. Both are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai import __version__
from cai.core.atomic_files import write_atomic, write_json_atomic
from cai.core.errors import CaiError

CARD_NAME = "README.md"
CARD_JSON = "cai_card.json"
AUDIT_NAME = "audit.json"


@dataclass
class DataFileInfo:
    """What a card says about one data file."""

    path: str
    role: str
    sha256: str | None
    records: int | None
    constitutions: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)
    hub_id: str | None = None  # the hub dataset it was read from, if any


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _constitution_of(obj: dict[str, Any]) -> tuple[str, str, str] | None:
    """``(name, version, hash)`` from a record's provenance, if it has one.

    >>> _constitution_of({"provenance": {"constitution": {"name": "c", "version": "1", "hash": "ab"}}})
    ('c', '1', 'ab')
    >>> _constitution_of({"provenance": None}), _constitution_of({})
    (None, None)
    """
    prov = obj.get("provenance")
    if isinstance(prov, str):  # provenance kept as JSON text (older exports, other tools)
        try:
            prov = json.loads(prov)
        except ValueError:
            prov = None
    const = prov.get("constitution") if isinstance(prov, dict) else None
    if not isinstance(const, dict):
        return None
    return str(const.get("name")), str(const.get("version")), str(const.get("hash"))


def describe_data(path: str | os.PathLike, role: str) -> DataFileInfo:
    """sha256, record count, constitutions and label sources of a JSONL data file.

    A hub dataset (``org/name[:config[:split]]``) or a folder is named only (no hash, no count);
    another file (parquet, CSV..., or a source string with a ``#`` column mapping) gets its hash only.
    """
    from cai.core.lineage import hub_dataset_id

    p = Path(path)
    hub_id = hub_dataset_id(path)
    if hub_id is not None or p.is_dir():
        return DataFileInfo(path=os.fspath(path), role=role, sha256=None, records=None, hub_id=hub_id)
    if not p.is_file() and Path(os.fspath(path).split("#", 1)[0]).is_file():
        p = Path(os.fspath(path).split("#", 1)[0])
        return DataFileInfo(path=os.fspath(path), role=role, sha256=sha256_file(p), records=None)
    if not p.is_file():
        raise CaiError(f"{p}: no such data file")
    if p.suffix.lower() in (".parquet", ".csv", ".tsv", ".arrow"):
        return DataFileInfo(path=str(p), role=role, sha256=sha256_file(p), records=None)
    consts: Counter[tuple[str, str, str]] = Counter()
    sources: Counter[str] = Counter()
    n = 0
    with p.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                continue  # the trainer's strict reader already reported bad lines
            if not isinstance(obj, dict):
                continue
            n += 1
            ref = _constitution_of(obj)
            if ref:
                consts[ref] += 1
            if isinstance(obj.get("source"), str):
                sources[obj["source"]] += 1
    return DataFileInfo(
        path=str(p), role=role, sha256=sha256_file(p), records=n,
        constitutions=[{"name": a, "version": b, "hash": c, "records": k}
                       for (a, b, c), k in consts.most_common()],
        sources=dict(sources.most_common()),
    )


def find_audit(preference_files: Sequence[str | os.PathLike], audit: str | os.PathLike | None = None
               ) -> tuple[Path, dict[str, Any]] | None:
    """The labeler audit: ``audit`` if given, else an ``audit.json`` beside a preference file."""
    candidates = [Path(audit)] if audit else [Path(f).parent / AUDIT_NAME for f in preference_files]
    for cand in candidates:
        if not cand.is_file():
            if audit:
                raise CaiError(f"{cand}: no such audit file",
                               hint="pass the audit.json written by `cai audit`")
            continue
        try:
            data = json.loads(cand.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CaiError(f"{cand}: not valid JSON: {exc}",
                           hint="pass the audit.json written by `cai audit`") from None
        if not isinstance(data, dict):
            raise CaiError(f"{cand}: expected a JSON object",
                           hint="pass the audit.json written by `cai audit`")
        return cand, data
    return None


def summarize_audit(data: Mapping[str, Any], limit: int = 60) -> dict[str, Any]:
    """Scalar facts of an audit report, nested keys joined with dots (lists shown by length).

    A proportion ``{k, n, rate, lo, hi}`` (as ``cai audit`` writes them) becomes one entry.

    >>> summarize_audit({"verdict": "usable", "agreement": {"both": {"k": 81, "n": 100, "rate": 0.81,
    ...     "lo": 0.72, "hi": 0.88}}, "ece": 0.04, "per_principle": {"harm": {"k": 9, "n": 10, "rate": 0.9}},
    ...     "reliability": [1, 2, 3]})  # doctest: +NORMALIZE_WHITESPACE
    {'verdict': 'usable', 'agreement.both': '0.810 (81/100, 95% CI 0.720-0.880)', 'ece': 0.04,
     'per_principle.harm': '0.900 (9/10)', 'reliability': '3 items'}
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, obj: Any) -> None:
        if len(out) >= limit:
            return
        if isinstance(obj, Mapping) and {"k", "n", "rate"} <= set(obj):
            out[prefix] = _proportion(obj)
        elif isinstance(obj, Mapping):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(obj, (list, tuple)):
            out[prefix] = f"{len(obj)} items"
        else:
            out[prefix] = obj

    walk("", data)
    return out


def _proportion(p: Mapping[str, Any]) -> str:
    if p.get("rate") is None:
        return f"n/a ({p.get('k')}/{p.get('n')})"
    ci = (f", 95% CI {p['lo']:.3f}-{p['hi']:.3f}"
          if p.get("lo") is not None and p.get("hi") is not None else "")
    return f"{p['rate']:.3f} ({p['k']}/{p['n']}{ci})"


def _fmt(v: Any) -> str:
    """
    >>> _fmt(0.123456789), _fmt(3), _fmt([1, "a"])
    ('0.1235', '3', '[1, "a"]')
    """
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def card_metadata(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The card's YAML metadata from the facts dict (``None`` values are left out of the card).

    >>> const = {"name": "c", "version": "1", "hash": "ab"}
    >>> m = card_metadata({"trainer": "dpo", "base_model_hub_id": "org/base", "license": "mit",
    ...     "data": [{"hub_id": "org/prefs", "constitutions": [const]}]})
    >>> m["base_model"], m["datasets"], m["license"], m["pipeline_tag"], m["tags"][-1]
    ('org/base', ['org/prefs'], 'mit', 'text-generation', 'dpo')
    >>> m["constitution"]
    [{'name': 'c', 'version': '1', 'hash': 'ab'}]
    """
    hub_data = sorted({d["hub_id"] for d in facts["data"] if d.get("hub_id")})
    return {
        "base_model": facts.get("base_model_hub_id"),
        "datasets": hub_data or None,
        "license": facts.get("license"),
        "library_name": "transformers",
        "pipeline_tag": "text-classification" if facts["trainer"] == "reward_model" else "text-generation",
        "tags": ["cai", "constitutional-ai", "trl", facts["trainer"]],
        "constitution": _constitutions(facts) or None,
    }


def _constitutions(facts: Mapping[str, Any]) -> list[dict[str, str]]:
    found = {(c["name"], c["version"], c["hash"]) for d in facts["data"] for c in d.get("constitutions", [])}
    return [{"name": n, "version": v, "hash": h} for n, v, h in sorted(found)]


def _data_row(d: Mapping[str, Any]) -> str:
    src = ", ".join(f"{k}: {v}" for k, v in d["sources"].items()) or "-"
    where = f"[{d['hub_id']}](https://huggingface.co/datasets/{d['hub_id']}) `{d['path']}`" if d.get(
        "hub_id") else f"`{d['path']}`"
    sha = f"`{d['sha256']}`" if d.get("sha256") else "-"
    records = d["records"] if d.get("records") is not None else "-"
    return f"| {d['role']} | {where} | {records} | {sha} | {src} |"


def render_body(facts: Mapping[str, Any]) -> str:
    """The card's Markdown body (below the metadata) from the facts dict."""
    from cai.core.lineage import constitution_yaml

    base = facts["base_model"]
    hub = facts.get("base_model_hub_id")
    lines = [f"# {facts['trainer'].upper()} model trained with cai", "",
             f"- base model: `{base}`" + (f" ([{hub}](https://huggingface.co/{hub}))" if hub and hub != base
                                           else ""),
             f"- trainer: {facts['trainer']} (cai {facts['cai_version']})",
             f"- finished: {facts['finished_at']}", ""]
    lines += ["## Constitution", ""]
    consts = _constitutions(facts)
    if not consts:
        lines.append("- none recorded in the data's provenance")
    for c in consts:
        lines.append(f"- {c['name']} version {c['version']} (hash `{c['hash']}`)")
        text = constitution_yaml(c)
        if text:
            lines += ["", "```yaml", text.rstrip(), "```", ""]
    lines += ["", "## Data", "", "| role | file | records | sha256 | label sources |",
              "|---|---|---|---|---|"]
    lines += [_data_row(d) for d in facts["data"]]
    if facts.get("audit"):
        lines += ["", "## Labeler audit", "", f"From `{facts['audit']['path']}`:", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in facts["audit"]["summary"].items()]
    if facts.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {k}: {_fmt(v)}" for k, v in facts["notes"].items()]
    lines += ["", "## Final metrics", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in facts["metrics"].items()] or ["- none"]
    lines += ["", "## Config (changed from the trainer's defaults)", "", "```json",
              json.dumps(facts["config"], indent=2, sort_keys=True, ensure_ascii=False), "```", ""]
    return "\n".join(lines)


def render_card(facts: Mapping[str, Any]) -> str:
    """The card (a ``huggingface_hub.ModelCard``: YAML metadata, then Markdown) from the facts dict."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(**{k: v for k, v in card_metadata(facts).items() if v is not None})
    card = ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}",
                                   body=render_body(facts))
    return str(card)


def write_model_card(
    output_dir: str | os.PathLike,
    *,
    trainer: str,
    base_model: str,
    data_files: Mapping[str, Sequence[str | os.PathLike]],
    config: Any = None,
    metrics: Mapping[str, Any] | None = None,
    audit: str | os.PathLike | None = None,
    notes: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``README.md`` and ``cai_card.json`` in ``output_dir``; return the card's path.

    ``data_files`` maps a role (``train``, ``preferences``, ``human_eval``...) to
    files; an audit is looked for beside files whose role mentions preferences
    unless ``audit`` names one. ``config`` is a config dataclass or a dict.
    """
    from cai.core.records import utc_now
    from cai.train.common.config import config_to_dict

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = [describe_data(p, role) for role, paths in data_files.items() for p in paths]
    pref_files = [d.path for d in data if "pref" in d.role or d.role == "train" and d.sources]
    found = find_audit(pref_files, audit)
    if config is None:
        cfg: dict[str, Any] = {}
    elif isinstance(config, Mapping):
        cfg = dict(config)
    else:
        cfg = config_to_dict(config, only_changed=True)
    from cai.core.lineage import hub_base_model, model_license

    facts = {
        "trainer": trainer,
        "base_model": base_model,
        "base_model_hub_id": hub_base_model(base_model),
        "license": model_license(base_model),
        "cai_version": __version__,
        "finished_at": utc_now(),
        "data": [d.__dict__ for d in data],
        "audit": {"path": str(found[0]), "summary": summarize_audit(found[1])} if found else None,
        "notes": dict(notes or {}),
        "metrics": {k: v for k, v in (metrics or {}).items()},
        "config": cfg,
    }
    write_json_atomic(out / CARD_JSON, facts, default=str)
    card = out / CARD_NAME
    write_atomic(card, render_card(facts))
    return card
