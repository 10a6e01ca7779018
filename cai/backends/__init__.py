"""Model backends behind one protocol (:mod:`cai.backends.protocol`), built from one spec
(:mod:`cai.backends.spec`).

``BackendSpec(name="default").build()`` gives the local transformers backend on the
embedded model; ``BackendSpec(backend="openai", name="my-model", base_url=[...]).build()``
any OpenAI-compatible server. Implementations are imported only when built.
"""

from __future__ import annotations

from cai.backends.protocol import Backend, Chat, Generation, ScoringUnsupported, request_seed
from cai.backends.spec import BackendSpec

__all__ = ["Backend", "BackendSpec", "Chat", "Generation", "ScoringUnsupported", "request_seed"]
