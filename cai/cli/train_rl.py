"""(being written)"""


def rloo() -> None:
    """(being written)"""


def grpo() -> None:
    """(being written)"""
