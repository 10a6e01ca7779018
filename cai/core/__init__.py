"""Shared building blocks: records, JSONL reading/writing, atomic files, errors, YAML lines, statistics."""
