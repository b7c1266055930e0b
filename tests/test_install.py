"""The package as a user installs it: `pip install .` into a fresh venv, used from a directory outside the clone.

The fresh venv sees this venv's packages (torch, ...) through a path file, so nothing is downloaded; the package
itself is built and installed from the clone (no build isolation, no index). Also: the clone's own editable install
(what scripts/setup.sh makes) resolves the former top-level names.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a venv, a build and several interpreters

SEED_IMPORT = """
import json, sys
from model.trackon_predictor import Predictor
import model, trackon2, trackon2.runtime.predictor as runtime_predictor
print(json.dumps({
    "same_class": Predictor is runtime_predictor.Predictor,
    "same_module": sys.modules["model"] is sys.modules["trackon2.model"],
    "spec_name": model.__spec__.name,
    "package_file": trackon2.__file__,
    "class_module": Predictor.__module__,
}))
"""


def _run(python: Path, args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**clean, **(env or {})})


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the package installed from the clone by `pip install .`: the venv's folder."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    fresh_site = Path(_run(python, ["-c", "import site; print(site.getsitepackages()[0])"], ROOT).stdout.strip())
    (fresh_site / "zz_dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                             "--no-build-isolation", "--no-index", str(ROOT)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return venv


def test_the_seed_import_works_outside_the_clone(installed, tmp_path):
    result = _run(installed / "bin" / "python", ["-c", SEED_IMPORT], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout)
    assert found["same_class"] and found["same_module"]
    assert found["spec_name"] == "trackon2.model" and found["class_module"] == "trackon2.runtime.predictor"
    assert Path(found["package_file"]).is_relative_to(installed), "the package came from the clone, not the install"


def test_another_projects_names_win_and_cannot_shadow_the_package(installed, tmp_path):
    (tmp_path / "utils.py").write_text("MINE = True\n")
    (tmp_path / "model").mkdir()  # a bare folder (say, of weights) is no package: the alias still applies
    other = tmp_path / "other_site"
    (other / "evaluation").mkdir(parents=True)
    (other / "evaluation" / "__init__.py").write_text("OTHER = True\n")
    script = ("import utils, evaluation\n"
              "from model.trackon_predictor import Predictor\n"
              "from trackon2.utils.model_options import DEFAULT_CONFIG\n"
              "from trackon2.evaluation.datasets import BENCHMARKS\n"
              "print(utils.MINE, evaluation.OTHER, Predictor.__name__, DEFAULT_CONFIG, 'davis' in BENCHMARKS)")
    result = _run(installed / "bin" / "python", ["-c", script], tmp_path, env={"PYTHONPATH": str(other)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "True", "Predictor", "config/test.yaml", "True"]


def test_the_commands_run_outside_the_clone_with_the_shipped_config_and_clip(installed, tmp_path):
    out = tmp_path / "out"
    result = _run(installed / "bin" / "trackon2-demo", ["--checkpoint", "none", "--config", "config/tiny.yaml",
                                                        "--max_frames", "3", "--grid_size", "2", "--no_video",
                                                        "--output_dir", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads((out / "tracks.json").read_text())
    assert len(saved["tracks"]) == 3 and len(saved["tracks"][0]) == 4
    for command in (["trackon2-eval", "--help"], ["trackon2-benchmark", "--help"], ["trackon2-train", "--help"]):
        helped = _run(installed / "bin" / command[0], command[1:], tmp_path)
        assert helped.returncode == 0 and "usage:" in helped.stdout, (command, helped.stderr[-1000:])
    module = _run(installed / "bin" / "python", ["-m", "evaluation.eval", "--help"], tmp_path)
    assert module.returncode == 0 and "--dataset_name" in module.stdout, module.stderr[-1000:]


def test_a_missing_shipped_config_is_still_one_line(installed, tmp_path):
    result = _run(installed / "bin" / "trackon2-demo", ["--checkpoint", "none", "--config", "config/nope.yaml",
                                                        "--no_video", "--output_dir", str(tmp_path)], tmp_path)
    assert result.returncode != 0
    assert "config/nope.yaml" in result.stderr and "Traceback" not in result.stderr


def test_the_clones_editable_install_resolves_the_former_names(tmp_path):
    result = _run(Path(sys.executable), ["-c", SEED_IMPORT], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout)
    assert found["same_class"] and Path(found["package_file"]).is_relative_to(ROOT)
