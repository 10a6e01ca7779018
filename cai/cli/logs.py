"""Logging for commands: cai's own INFO lines to stderr, third-party chatter at WARNING."""

from __future__ import annotations

import logging


def setup_logging(verbose: bool = False) -> None:
    """Say what the command is doing and where outputs went, without HTTP-client noise."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("cai").setLevel(logging.DEBUG if verbose else logging.INFO)
