"""Helpers for error messages."""


def one_line(err: BaseException) -> str:
    """An exception as one line: its type and its message with the whitespace collapsed."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"
