"""The project's former top-level names (``model``, ``evaluation``, ...) as aliases of ``trackon2.<name>``.

``from model.trackon_predictor import Predictor`` and ``python -m evaluation.eval`` keep working once the
package is installed (its ``trackon2-aliases.pth`` calls ``install()`` at start-up). An alias is the very module
object of ``trackon2.<name>`` (one class per class, so isinstance checks and pickles agree), and it only applies
where nothing else on ``sys.path`` provides the name: another project's ``utils`` or ``model`` wins, and this
project's own code imports ``trackon2.<name>`` only, so neither side can shadow the other.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import CodeType, ModuleType

PACKAGE = "trackon2"
ALIASED = ("model", "runtime", "evaluation", "training", "video", "utils", "dataset", "webapp", "export")


class AliasLoader(importlib.abc.Loader):
    """Loads an alias by importing its target and handing back that same module."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.target_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.target_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The import system has just set the target's ``__spec__`` to the alias's spec: put its own back."""
        module.__spec__ = self.target_spec

    def get_code(self, fullname: str) -> CodeType | None:
        """The target's code, for ``python -m <alias>`` (runpy runs it as ``__main__``)."""
        spec = importlib.util.find_spec(self.target)
        return spec.loader.get_code(self.target)


class AliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``<name>`` and ``<name>.<sub>`` to ``trackon2.<name>[.<sub>]`` for the names in ``ALIASED``."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top not in ALIASED:
            return None
        if top == fullname:
            if self._found_elsewhere(fullname):
                return None
        elif getattr(sys.modules.get(top), "__name__", None) != f"{PACKAGE}.{top}":
            return None  # a submodule of another project's package of that name
        target_name = f"{PACKAGE}.{fullname}"
        target_spec = importlib.util.find_spec(target_name)
        if target_spec is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, AliasLoader(target_name), origin=target_spec.origin,
                                              is_package=target_spec.submodule_search_locations is not None)

    def _found_elsewhere(self, name: str) -> bool:
        """Whether a finder other than this one provides the top-level module or regular package ``name``
        (a bare directory of that name, which would only make a namespace package, does not count)."""
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, None)
            if spec is not None and spec.origin not in (None, "namespace"):
                return True
        return False


def install() -> None:
    """Put the alias finder first on ``sys.meta_path`` (once). First, so that the submodules of an aliased
    package are the target's modules rather than second copies found through the shared ``__path__``."""
    if not any(isinstance(finder, AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())
