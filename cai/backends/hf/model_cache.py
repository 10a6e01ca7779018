"""Where cai keeps the models it converts (the embedded GGUF as safetensors, int8 calibration maxima)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$CAI_CACHE_DIR/models``, or ``~/.cache/cai/models``.

    >>> cache_dir().name
    'models'
    """
    root = os.environ.get("CAI_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "cai")
    return Path(root) / "models"
