"""The report's other inputs: training curves and the labeler audit, read from what the trainers wrote.

A curve file is either ``metrics.jsonl`` from ``cai train ppo`` (one row per step)
or a TRL ``trainer_state.json`` (its ``log_history``); a folder is searched for
either. Only numeric fields are kept. The audit is ``audit.json`` from
``cai audit labeler``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cai.core.errors import CaiError

CURVE_FILES = ("metrics.jsonl", "trainer_state.json")


def numeric_rows(rows: list[Any]) -> list[dict[str, float]]:
    """Each row's finite numeric fields (``step`` kept); rows without any metric dropped.

    >>> numeric_rows([{"step": 1, "loss": 0.5, "id": "s1"}, {"step": 2}, "junk", {"loss": float("nan")}])
    [{'step': 1.0, 'loss': 0.5}]
    """
    out = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        kept = {k: float(v) for k, v in row.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if any(k != "step" for k in kept):
            out.append(kept)
    return out


def _checkpoint_order(path: Path) -> tuple[int, str]:
    """Sort key: a ``checkpoint-N`` folder by N (so checkpoint-100 comes after checkpoint-20).

    >>> sorted(["a/checkpoint-100/t", "a/checkpoint-20/t"], key=lambda p: _checkpoint_order(Path(p)))
    ['a/checkpoint-20/t', 'a/checkpoint-100/t']
    """
    tail = path.parent.name.rsplit("-", 1)[-1]
    return (int(tail) if tail.isdigit() else -1, path.parent.name)


def find_curve_file(path: Path) -> Path:
    """The curve file itself, or the first of :data:`CURVE_FILES` inside a folder (searched one level down too)."""
    if path.is_file():
        return path
    if path.is_dir():
        for name in CURVE_FILES:
            hits = [path / name] if (path / name).is_file() else sorted(path.glob(f"*/{name}"), key=_checkpoint_order)
            if hits:
                return hits[-1]
    raise CaiError(f"curves {path}: no {' or '.join(CURVE_FILES)} there",
                   hint="pass a training run's metrics.jsonl, trainer_state.json, or its folder")


def load_curve(path: str | Path) -> list[dict[str, float]]:
    """The logged steps of one training run."""
    p = find_curve_file(Path(path))
    try:
        if p.suffix == ".jsonl":
            rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            data = json.loads(p.read_text(encoding="utf-8"))
            rows = data.get("log_history", []) if isinstance(data, dict) else []
    except (OSError, ValueError) as exc:
        raise CaiError(f"curves {p}: cannot read it: {exc}", hint="pass a metrics.jsonl or trainer_state.json") from None
    return numeric_rows(rows)


def load_audit(path: str | Path) -> dict[str, Any]:
    """``audit.json`` of ``cai audit labeler`` (a folder holding one works too)."""
    p = Path(path)
    if p.is_dir():
        p = p / "audit.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CaiError(f"audit {p}: cannot read it: {exc}", hint="pass the audit.json of `cai audit labeler`") from None
    if not isinstance(data, dict) or "reliability" not in data:
        raise CaiError(f"audit {p}: not an audit (no 'reliability' field)", hint="pass the audit.json of `cai audit labeler`")
    return data
