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
    """The curve file itself, or the first of :data:`CURVE_FILES` inside a folder (searched one level down
    too)."""
    if path.is_file():
        return path
    if path.is_dir():
        for name in CURVE_FILES:
            hits = ([path / name] if (path / name).is_file()
                    else sorted(path.glob(f"*/{name}"), key=_checkpoint_order))
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
        raise CaiError(f"curves {p}: cannot read it: {exc}",
                       hint="pass a metrics.jsonl or trainer_state.json") from None
    return numeric_rows(rows)


def load_audit(path: str | Path) -> dict[str, Any]:
    """``audit.json`` of ``cai audit labeler`` (a folder holding one works too)."""
    p, data = _read_json(path, "audit", "cai audit labeler")
    if "reliability" not in data:
        raise CaiError(f"audit {p}: not an audit (no 'reliability' field)",
                       hint="pass the audit.json of `cai audit labeler`")
    return data


def _read_json(path: str | Path, what: str, command: str) -> tuple[Path, dict[str, Any]]:
    p = Path(path)
    if p.is_dir():
        p = p / "audit.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CaiError(f"{what} {p}: cannot read it: {exc}",
                       hint=f"pass the audit.json of `{command}`") from None
    if not isinstance(data, dict):
        raise CaiError(f"{what} {p}: not an audit (a JSON object expected)",
                       hint=f"pass the audit.json of `{command}`")
    return p, data


def load_judge_audit(path: str | Path) -> dict[str, Any]:
    """``audit.json`` of ``cai audit judge``: the harm judge against human labels.

    Needs ``kind: judge`` and ``accuracy`` ``{k, n, rate, lo, hi}``; ``score_sd``, ``ties``,
    ``signal`` and ``verdict`` are kept when present. The path is added as ``path``.
    """
    p, data = _read_json(path, "judge_audit", "cai audit judge")
    hint = "pass the audit.json of `cai audit judge`"
    if data.get("kind") != "judge":
        raise CaiError(f"judge_audit {p}: kind: expected 'judge', got {data.get('kind')!r}", hint=hint)
    acc = data.get("accuracy")
    if not isinstance(acc, dict) or not all(isinstance(acc.get(k), (int, float))
                                            for k in ("rate", "lo", "hi", "n")):
        raise CaiError(f"judge_audit {p}: accuracy: expected {{k, n, rate, lo, hi}}", hint=hint)
    return {**data, "path": str(p)}


def load_refusal_audit(path: str | Path) -> dict[str, Any]:
    """``audit.json`` of ``cai audit refusal``: the refusal detector against human labels.

    Needs ``kind: refusal`` and float ``accuracy``, ``precision``, ``recall``.
    """
    p, data = _read_json(path, "refusal_audit", "cai audit refusal")
    hint = "pass the audit.json of `cai audit refusal`"
    if data.get("kind") != "refusal":
        raise CaiError(f"refusal_audit {p}: kind: expected 'refusal', got {data.get('kind')!r}", hint=hint)
    for key in ("accuracy", "precision", "recall"):
        v = data.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
            raise CaiError(f"refusal_audit {p}: {key}: expected a number in [0, 1], got {v!r}", hint=hint)
    return {**data, "path": str(p)}


TRAINING_EXAMPLES = 3  # rows of each training data file shown in the report
TEXT_CHARS = 1500  # longest text kept per field of a shown row


def _clip(text: Any, chars: int = TEXT_CHARS) -> str:
    """A field as text, cut to ``chars`` with an ellipsis.

    >>> _clip("abcdef", 3), _clip([{"role": "assistant", "content": "hi"}])
    ('abc…', 'hi')
    """
    if isinstance(text, list):  # messages: the last one's content
        text = text[-1].get("content", "") if text and isinstance(text[-1], dict) else ""
    text = "" if text is None else str(text)
    return text if len(text) <= chars else text[:chars] + "…"


def _messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": _clip(prompt)}]
    if isinstance(prompt, list):
        return [{"role": str(m.get("role", "")), "content": _clip(m.get("content", ""))}
                for m in prompt if isinstance(m, dict)]
    return []


def training_example(row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The kind of a training row and what the report shows of it.

    >>> training_example({"prompt": "q", "completion": [{"role": "assistant", "content": "a"}]})
    ('sft', {'prompt': [{'role': 'user', 'content': 'q'}], 'completion': 'a'})
    >>> kind, ex = training_example({"prompt": "q", "chosen": "good", "rejected": "bad", "p_chosen": 0.8,
    ...                              "ai_label": {"position_consistent": False}})
    >>> kind, ex["p_chosen"], ex["position_consistent"]
    ('preferences', 0.8, False)
    """
    if "chosen" in row and "rejected" in row:
        detail = row.get("ai_label", row.get("label"))  # "label": files written before the rename
        label = detail if isinstance(detail, dict) else {}
        return "preferences", {
            "prompt": _messages(row.get("prompt")), "chosen": _clip(row.get("chosen")),
            "rejected": _clip(row.get("rejected")), "p_chosen": row.get("p_chosen"),
            "position_consistent": label.get("position_consistent"), "source": row.get("source"),
        }
    if "completion" in row:
        return "sft", {"prompt": _messages(row.get("prompt")), "completion": _clip(row.get("completion"))}
    return "other", {k: _clip(v, 300) for k, v in list(row.items())[:6]}


def load_training_sample(name: str, path: str | Path, seed: int = 0,
                         k: int = TRAINING_EXAMPLES) -> dict[str, Any]:
    """A seeded sample of ``k`` rows of one training data file (SFT rows or preference pairs), and its
    size."""
    import random

    from cai.core.records import make_id

    p = Path(path)
    try:
        lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise CaiError(f"training_data {name}: {p}: cannot read it: {exc.strerror or exc}",
                       hint="pass the SFT JSONL (critique/sft.jsonl) or the preferences JSONL of the "
                            "run") from None
    rng = random.Random(make_id("eval-training-sample", seed, name))
    picks = sorted(rng.sample(range(len(lines)), min(k, len(lines))))
    kinds, examples = [], []
    for i in picks:
        try:
            row = json.loads(lines[i])
        except ValueError:
            continue
        if isinstance(row, dict):
            kind, ex = training_example(row)
            kinds.append(kind)
            examples.append({"line": i + 1, **ex})
    kind = kinds[0] if kinds and len(set(kinds)) == 1 else "other"
    return {"name": name, "path": str(p), "kind": kind, "rows": len(lines), "examples": examples,
            "note": stage_note(p.parent / "stats.json", kind)}


def stage_note(stats_file: Path, kind: str) -> str | None:
    """What the stage that wrote a training file said about it (its ``stats.json`` beside the file), if any:
    for labels, whether they carry signal; for an SFT set, how many rows survived the gates and why not.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "stats.json").write_text('{"signal": {"signal": false, '
    ...                                   '"reasons": ["consistency 4% <= 50%"]}}')
    >>> stage_note(d / "stats.json", "preferences")
    'the label stage measured: the labels carry no signal (consistency 4% <= 50%)'
    >>> stage_note(d / "missing.json", "sft") is None
    True
    """
    try:
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if kind == "preferences" and isinstance(stats.get("signal"), dict):
        s = stats["signal"]
        if s.get("signal"):
            return "the label stage measured: the labels carry signal"
        return f"the label stage measured: the labels carry no signal ({'; '.join(s.get('reasons', []))})"
    if kind == "sft" and "sft_rows" in stats:
        why = stats.get("left_out_why") or {}
        left = ", ".join(f"{k} {v}" for k, v in sorted(why.items(), key=lambda kv: -kv[1]))
        source = stats.get("sft_source", "revision")
        return (f"the critique stage kept {stats['sft_rows']} SFT row(s) (source {source}; red-team traces "
                f"left out: {left or 'none'})")
    return None
