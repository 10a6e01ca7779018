"""(being written)"""


def ppo() -> None:
    """(being written)"""
