"""An export on disk as the hub lays datasets out: one parquet file per split and a ``README.md`` card.

``data/<split>-00000-of-00001.parquet`` for each non-empty split, and a dataset
card (``huggingface_hub.DatasetCard``) whose YAML declares the ``configs``, so
``datasets.load_dataset(FOLDER)`` (or the hub repo it is uploaded to) returns
the named splits ``train_sft``/``test_sft``/``train_prefs``/``test_prefs``.

A ``datasets`` config has one schema, so when an export holds both kinds every
split carries the union of their columns (an SFT row's ``chosen`` is null, a
preference row's ``completion`` too). Two more configs read one kind with its
own columns only: ``load_dataset(FOLDER, "sft")`` and ``load_dataset(FOLDER,
"prefs")`` give what TRL's SFT and DPO trainers take unchanged. An empty split
(no test records) is left out: ``datasets`` cannot load a split without rows.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cai.core.errors import CaiError
from cai.core.lineage import constitution_refs, constitution_yaml

if TYPE_CHECKING:
    import datasets
    from huggingface_hub import DatasetCard

log = logging.getLogger(__name__)

CARD_NAME = "README.md"
SPLIT_ORDER = ("train_sft", "test_sft", "train_prefs", "test_prefs")
COLUMN_ORDER = ("id", "prompt", "completion", "chosen", "rejected", "p_chosen", "source", "weight",
                "ai_label", "provenance")
TAGS = ["cai", "constitutional-ai", "rlaif", "trl"]


def split_file(split: str) -> str:
    """Where a split's rows go, relative to the export folder.

    >>> split_file("train_prefs")
    'data/train_prefs-00000-of-00001.parquet'
    """
    return f"data/{split}-00000-of-00001.parquet"


def size_category(n: int) -> str:
    """The hub's ``size_categories`` value for ``n`` rows.

    >>> size_category(5), size_category(1000), size_category(25_000), size_category(2_000_000)
    ('n<1K', '1K<n<10K', '10K<n<100K', '1M<n<10M')
    """
    for limit, name in ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"),
                        (10**6, "100K<n<1M"), (10**7, "1M<n<10M")):
        if n < limit:
            return name
    return "n>10M"


def _kind(split: str) -> str:
    return split.split("_", 1)[1]


def configs(splits: list[str], columns: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The card's ``configs``: ``default`` with every split, plus ``sft``/``prefs`` (own columns) when both.

    >>> [c["config_name"] for c in configs(["train_sft"], {"sft": ["id"]})]
    ['default']
    >>> cs = configs(["train_sft", "train_prefs"], {"sft": ["id", "completion"], "prefs": ["id", "chosen"]})
    >>> [(c["config_name"], [f["split"] for f in c["data_files"]], c.get("columns")) for c in cs]
    [('default', ['train_sft', 'train_prefs'], None), ('sft', ['train_sft'], ['id', 'completion']), \
('prefs', ['train_prefs'], ['id', 'chosen'])]
    """
    def files(names: list[str]) -> list[dict[str, str]]:
        return [{"split": s, "path": split_file(s)} for s in names]

    out: list[dict[str, Any]] = [{"config_name": "default", "data_files": files(splits)}]
    kinds = [k for k in ("sft", "prefs") if any(_kind(s) == k for s in splits)]
    if len(kinds) > 1:
        out += [{"config_name": k, "data_files": files([s for s in splits if _kind(s) == k]),
                 "columns": columns[k]} for k in kinds]
    return out


def aligned(dd: datasets.DatasetDict) -> datasets.DatasetDict:
    """Every split with the union of the splits' columns (nulls where a split lacks one), in one order."""
    import datasets

    features: dict[str, Any] = {}
    for split in dd.values():
        features.update(split.features)
    names = [c for c in COLUMN_ORDER if c in features] + [c for c in features if c not in COLUMN_ORDER]
    union = datasets.Features({c: features[c] for c in names})
    out = {}
    for name, split in dd.items():
        for col in names:
            if col not in split.column_names:
                split = split.add_column(col, [None] * split.num_rows, feature=union[col])
        split = split.select_columns(names)
        out[name] = split if split.features == union else split.cast(union)
    return datasets.DatasetDict(out)


def _provenance_summary(dd: datasets.DatasetDict) -> tuple[list[dict[str, str]], Counter[str]]:
    """Constitution refs and the count of rows per generating model, from the provenance column."""
    provs = [p for split in dd.values() if "provenance" in split.column_names for p in split["provenance"]]
    provs = [p for p in provs if isinstance(p, dict)]
    return constitution_refs(provs), Counter(str(p["model"]) for p in provs if p.get("model"))


def dataset_card(dd: datasets.DatasetDict, *, repo_id: str | None = None, pretty_name: str | None = None,
                 license: str | None = None, description: str | None = None,
                 constitution_text: str | None = None, source_datasets: list[str] | None = None,
                 extra_sections: str = "") -> DatasetCard:
    """The ``README.md`` card of an export (``dd`` as written: non-empty splits only).

    Metadata: the configs, licence (when given), tags, size, the constitutions (name, version, hash)
    named in the rows' provenance. The body: how to load it, the splits, the columns, each
    constitution's YAML (``constitution_text``, else a shipped constitution with that hash).
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    from cai import __version__

    splits = [s for s in SPLIT_ORDER if s in dd] + [s for s in dd if s not in SPLIT_ORDER]
    columns = {_kind(s): list(dd[s].column_names) for s in splits}
    refs, models = _provenance_summary(dd)
    kinds = {_kind(s) for s in splits}
    total = sum(dd[s].num_rows for s in splits)
    data = DatasetCardData(
        license=license, pretty_name=pretty_name,
        tags=TAGS + sorted({"sft" if k == "sft" else "dpo" for k in kinds}),
        task_categories=["text-generation"], language=["en"], size_categories=[size_category(total)],
        source_datasets=source_datasets or None, configs=configs(splits, columns),
        constitution=refs or None,
    )
    where = repo_id or "path/to/this/folder"
    title = pretty_name or (repo_id.split("/")[-1] if repo_id else "cai export")
    lines = [f"# {title}", "", description or f"Made by `cai export` (cai {__version__}).", "",
             "## Loading", "", "```python", "from datasets import load_dataset", "",
             f'ds = load_dataset("{where}")  # {", ".join(splits)}']
    if len(kinds) > 1:
        lines += [f'sft = load_dataset("{where}", "sft")  # prompt/completion only: TRL\'s SFTTrainer',
                  f'prefs = load_dataset("{where}", "prefs")  # prompt/chosen/rejected...: TRL\'s DPOTrainer']
    lines += ["```", ""]
    if len(kinds) > 1:
        lines += ["In the default config every split has both kinds' columns (the other kind's are null).",
                  ""]
    lines += ["## Splits", "", "| split | rows |", "|---|---|"]
    lines += [f"| {s} | {dd[s].num_rows} |" for s in splits]
    lines += ["", "## Columns", "",
              "- `prompt`, `completion`, `chosen`, `rejected`: lists of `{role, content}` messages (TRL's "
              "conversational formats)",
              "- `p_chosen`: probability that `chosen` is the better answer (soft label; 1.0 for a hard "
              "label)",
              "- `source`: who labelled the pair (`ai`, `human`, `revision`); `weight`: per-pair weight",
              "- `ai_label`: how the AI labeler reached `p_chosen` (per-order probabilities, principles, "
              "position consistency); null for other sources",
              "- `provenance`: constitution, principles, model, sampling and seed of each record", ""]
    if models:
        lines += ["## Made by", ""] + [f"- `{m}`: {k} rows" for m, k in models.most_common()] + [""]
    lines += ["## Constitution", ""]
    if not refs:
        lines += ["None recorded in the rows' provenance.", ""]
    for ref in refs:
        text = constitution_text if constitution_text and len(refs) == 1 else constitution_yaml(ref)
        lines += [f"- {ref['name']} version {ref['version']} (sha256 `{ref['hash']}`)", ""]
        if text:
            lines += ["```yaml", text.rstrip(), "```", ""]
    card = DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n",
                                     body="\n".join(lines).rstrip() + "\n" + extra_sections)
    return card


def is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier ``cai export`` (this layout, or the older ``save_to_disk`` one)."""
    if (folder / "dataset_dict.json").is_file():
        return True
    card = folder / CARD_NAME
    if not (card.is_file() and (folder / "data").is_dir()):
        return False
    from huggingface_hub import DatasetCard

    try:
        data = DatasetCard.load(card).data
    except Exception:  # a README that is not a card
        return False
    return "cai" in (data.tags or []) and bool(data.get("configs"))


def _clear_earlier(folder: Path) -> None:
    """Remove the files of an earlier export in ``folder`` (only those), so no stale split survives."""
    import json
    import shutil

    for f in (folder / "data").glob("*-00000-of-00001.parquet"):
        f.unlink()
    old = folder / "dataset_dict.json"
    if old.is_file():  # the save_to_disk layout of earlier versions
        for split in json.loads(old.read_text(encoding="utf-8")).get("splits", []):
            if (folder / split).is_dir():
                shutil.rmtree(folder / split)
        old.unlink()


def write_export(dd: datasets.DatasetDict, folder: str | os.PathLike, **card: Any) -> Path:
    """Write ``dd`` into ``folder`` as parquet splits and a dataset card; return the card's path.

    ``card`` holds :func:`dataset_card`'s keyword arguments. A non-empty folder must hold an
    earlier export, whose files are replaced.
    """
    from cai.core.atomic_files import write_atomic

    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise CaiError(f"{out}: exists and is a file", hint="give a folder path")
    if out.is_dir() and any(out.iterdir()) and not is_export(out):
        raise CaiError(f"{out}: folder is not empty and holds no earlier export",
                       hint="choose a new folder, or empty this one")
    import datasets
    import datasets.utils as hf_tqdm

    kept = datasets.DatasetDict({name: split for name, split in dd.items() if split.num_rows})
    if not kept:
        raise CaiError(f"{out}: nothing to write (every split is empty)", hint="pass files with records")
    text = str(dataset_card(kept, **card))
    out.mkdir(parents=True, exist_ok=True)
    _clear_earlier(out)
    (out / "data").mkdir(exist_ok=True)
    quiet = hf_tqdm.are_progress_bars_disabled()
    hf_tqdm.disable_progress_bars()
    try:
        for name, split in aligned(kept).items():
            split.to_parquet(str(out / split_file(name)))
    finally:
        if not quiet:
            hf_tqdm.enable_progress_bars()
    path = out / CARD_NAME
    write_atomic(path, text)
    return path
