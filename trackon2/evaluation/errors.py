"""The evaluation CLI's user-facing failures, in their own module so that every part of the CLI raises the classes
``evaluation.eval.main`` catches (also when it runs as ``python -m evaluation.eval``, i.e. as ``__main__``)."""

from __future__ import annotations


class EvaluationStopped(Exception):
    """``--strict`` met a video that cannot be evaluated; the finished videos are saved."""


class SetupError(Exception):
    """A user-facing problem with the config, dataset or checkpoint; reported without a traceback."""
