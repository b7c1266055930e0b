"""The table of trackers and ensembles the evaluation can run, by name.

An entry is a factory registered with ``@register_tracker(name)`` (``ensemble=True`` for an ensemble); its keyword
arguments are the options it takes (``build_tracker(name, checkpoint=..., device=...)``). The built-in entries live
in the modules of ``BUILTIN_MODULES``, imported on first use: adding a tracker is one new module with a registered
factory and its name in that tuple.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

BUILTIN_MODULES = ("evaluation.trackers.trackon", "evaluation.trackers.ensembles", "evaluation.trackers.verifier")

Factory = Callable[..., Any]


class TrackerRegistryError(ValueError):
    """An unknown tracker name, an option a tracker does not take, or options that cannot work."""


@dataclass(frozen=True)
class TrackerEntry:
    """A registered tracker or ensemble: its factory, and a ``check`` that validates options without building it."""

    name: str
    factory: Factory
    ensemble: bool = False
    description: str = ""
    check: Callable[..., None] | None = None

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword options the factory takes."""
        return tuple(name for name, p in inspect.signature(self.factory).parameters.items()
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    def accepted(self, options: dict[str, Any]) -> dict[str, Any]:
        """The subset of ``options`` this entry takes (for options shared by every entry of a run)."""
        return {key: value for key, value in options.items() if key in self.options}


_ENTRIES: dict[str, TrackerEntry] = {}
_loaded = False


def register_tracker(name: str, *, ensemble: bool = False, description: str = "",
                     check: Callable[..., None] | None = None) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory`` under ``name`` (a second registration of a name is an error)."""
    if not name or any(c in name for c in "=./ ,"):
        raise TrackerRegistryError(f"tracker name {name!r} must be non-empty without '=', '.', '/', ',' or spaces")

    def register(factory: Factory) -> Factory:
        if name in _ENTRIES:
            raise TrackerRegistryError(f"tracker {name!r} is registered twice")
        _ENTRIES[name] = TrackerEntry(name, factory, ensemble, description, check)
        return factory

    return register


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def tracker_names(ensembles: bool | None = None) -> list[str]:
    """Registered names, in registration order; only ensembles (True) or only trackers (False) if asked."""
    _load_builtins()
    return [name for name, entry in _ENTRIES.items() if ensembles is None or entry.ensemble == ensembles]


def get_entry(name: str) -> TrackerEntry:
    """The entry registered as ``name``; an unknown name is an error listing the known ones."""
    _load_builtins()
    if name not in _ENTRIES:
        close = difflib.get_close_matches(name, list(_ENTRIES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TrackerRegistryError(f"unknown tracker {name!r}{hint}; known: {', '.join(_ENTRIES)}")
    return _ENTRIES[name]


def _require_known_options(entry: TrackerEntry, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise TrackerRegistryError(f"{entry.name} takes the option(s) {', '.join(entry.options) or 'none'}; "
                                   f"not {', '.join(unknown)}")


def check_tracker(name: str, **options: Any) -> None:
    """Validate ``options`` for ``name`` (files exist, required ones given) without building anything."""
    entry = get_entry(name)
    _require_known_options(entry, options)
    if entry.check is not None:
        entry.check(**options)


def build_tracker(name: str, **options: Any) -> Any:
    """The tracker (or ensemble) registered as ``name``, built with ``options``."""
    entry = get_entry(name)
    _require_known_options(entry, options)
    return entry.factory(**options)
