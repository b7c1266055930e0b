"""Values a fast module derives from its own frozen parameters (converted weights, constant tables), kept on it.

A value is kept while every parameter it is made from is frozen (``requires_grad`` False, as in a ``Predictor``);
it is dropped by the actions that change those parameters or their storage: ``load_state_dict``, ``.to()`` /
``.cuda()`` / ``.double()`` (anything through ``Module._apply``), assigning a parameter, making one trainable
(the next call sees it and drops the kept values), and copying or pickling the module (the copy derives its own).
An in-place write to a frozen parameter outside these (``weight.data.mul_(2)``) is not seen: call
``forget_derived`` after it. Nothing is keyed on object identity, storage or version counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
import torch.nn as nn

Value = TypeVar("Value")


class KeepsDerivedValues(nn.Module):
    """Mixin for the fast subclasses: ``derived(key, sources, make)`` returns ``make()``, kept between calls."""

    def derived(self, key: str, sources: Iterable[torch.Tensor | None], make: Callable[[], Value]) -> Value:
        """``make()``, kept under ``key`` while every tensor in ``sources`` is frozen; recomputed (and all kept
        values dropped) while one is trainable."""
        if any(source is not None and source.requires_grad for source in sources):
            self.forget_derived()
            return make()
        kept = self.__dict__.setdefault("_derived_values", {})
        if key not in kept:
            kept[key] = make()
        return kept[key]

    def forget_derived(self) -> None:
        """Drop the kept values (they are made again on the next call)."""
        self.__dict__.pop("_derived_values", None)

    def _apply(self, fn: Callable, *args: Any, **kwargs: Any) -> nn.Module:
        self.forget_derived()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self.forget_derived()
        super()._load_from_state_dict(*args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, torch.Tensor) or name in self.__dict__.get("_parameters", {}):
            self.forget_derived()
        super().__setattr__(name, value)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_derived_values", None)
        return state


def forget_all_derived(module: nn.Module) -> None:
    """Drop every kept value in ``module`` and its submodules (after writing frozen weights in place)."""
    for child in module.modules():
        if isinstance(child, KeepsDerivedValues):
            child.forget_derived()
