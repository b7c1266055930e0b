"""Installs ``trackon2-aliases.pth`` beside the package (see trackon2/aliases.py); everything else is in
pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ALIASES_PTH = "trackon2-aliases.pth"


class BuildWithAliases(build_py):
    """build_py that also puts the alias start-up file at the top of the built tree (site-packages once
    installed), in regular and in editable builds."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(Path(__file__).parent / ALIASES_PTH), str(self._top() / ALIASES_PTH), preserve_mode=False)

    def _top(self) -> Path:
        """Where the top of the installed tree is built: ``build_lib``, except in an editable build, which installs
        the packages from the source tree and only the wheel's own folder (the install command's target)."""
        if getattr(self, "editable_mode", False):
            return Path(self.distribution.get_command_obj("install").install_lib)
        return Path(self.build_lib)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / ALIASES_PTH)]

    def get_output_mapping(self) -> dict[str, str]:
        return {**super().get_output_mapping(), str(Path(self.build_lib) / ALIASES_PTH): ALIASES_PTH}


setup(cmdclass={"build_py": BuildWithAliases})
