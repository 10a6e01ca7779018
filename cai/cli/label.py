"""(being written)"""


def label() -> None:
    """(being written)"""
