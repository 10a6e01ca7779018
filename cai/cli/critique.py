"""(being written)"""


def critique() -> None:
    """(being written)"""
