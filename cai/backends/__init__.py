"""Model backends behind one protocol (:mod:`cai.backends.protocol`).

``make_backend("hf", "default")`` gives the local transformers backend on the
embedded model; ``make_backend("openai", "my-model", base_urls=[...])`` any
OpenAI-compatible server. Implementations are imported lazily.
"""

from __future__ import annotations

from typing import Any

from cai.backends.protocol import Backend, Chat, Generation, ScoringUnsupported, request_seed
from cai.core.errors import CaiError

__all__ = ["Backend", "Chat", "Generation", "ScoringUnsupported", "request_seed", "make_backend"]

BACKENDS = ("hf", "openai")


def make_backend(kind: str, model: str, **options: Any) -> Backend:
    """Build a backend by kind. Options go to the implementation's constructor."""
    if kind == "hf":
        from cai.backends.hf.backend import HFBackend

        return HFBackend(model, **options)
    if kind == "openai":
        from cai.backends.openai.backend import OpenAIBackend

        return OpenAIBackend(model, **options)
    raise CaiError(f"unknown backend {kind!r}", hint=f"use one of: {', '.join(BACKENDS)}")
