"""`cai env` (being written)."""


def env() -> None:
    """Print versions, the device, and where the default model is cached."""
