"""(being written)"""


def dpo() -> None:
    """(being written)"""
