"""(being written)"""


def rm() -> None:
    """(being written)"""
