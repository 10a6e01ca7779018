"""`cai export` (being written)."""


def export() -> None:
    """Export JSONL records to a datasets DatasetDict."""
