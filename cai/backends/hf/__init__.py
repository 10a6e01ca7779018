"""The local transformers backend: decode loop, scoring, KV caches, prefix reuse, padding, loading."""
