"""The one exception type every dataset reader raises for unusable files."""

from __future__ import annotations

from pathlib import Path


class DatasetFormatError(ValueError):
    """A dataset file or folder that is missing, malformed or inconsistent.

    The message always starts with the offending path so that a broken download can be found without a traceback.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
