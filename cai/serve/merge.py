"""A merged copy of a LoRA adapter on its base model, for engines that cannot load adapters.

``transformers serve`` preloads one full model and knows nothing of LoRA; a layer given only as an
adapter is served from ``out`` = base + adapter merged (``peft``'s ``merge_and_unload``), written
once: a marker in ``out`` records the base and the adapter's files, so a second ``cai serve`` reuses
the copy until the adapter changes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)
MARKER = ".cai-merged.json"


def adapter_stamp(base: str, adapter: Path) -> dict[str, object]:
    """What a merged copy depends on: the base model and the adapter's files (size, mtime).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "adapter_config.json").write_text("{}")
    >>> sorted(adapter_stamp("base", d)["files"])
    ['adapter_config.json']
    """
    files = {p.name: [p.stat().st_size, int(p.stat().st_mtime)]
             for p in sorted(adapter.iterdir()) if p.is_file()}
    return {"base": base, "adapter": str(adapter), "files": files}


def merged_copy(base: str, adapter: str | Path, out: Path, dtype: str = "float32") -> Path:
    """``out`` holding base + adapter merged (reused when its marker matches); returns ``out``."""
    adapter = Path(adapter)
    stamp = adapter_stamp(base, adapter)
    marker = out / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        log.info("merged copy of %s is up to date: %s", adapter, out)
        return out
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("merging %s into %s -> %s (transformers serve loads no adapters)", adapter, base, out)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    has_tokenizer = any((adapter / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(str(adapter) if has_tokenizer else base)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / MARKER).write_text(json.dumps(stamp, sort_keys=True))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out
