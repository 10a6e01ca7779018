"""(being written)"""


def sft() -> None:
    """(being written)"""
