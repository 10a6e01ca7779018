"""`cai generate` (being written)."""


def generate() -> None:
    """Run prompts through a backend to completion records."""
