"""Bad input to ``python -m evaluation.eval`` ends with a clear message, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trackon2.evaluation.eval import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"not a checkpoint")
    not_a_pickle = tmp_path / "davis.pkl"
    not_a_pickle.write_bytes(b"garbage")
    return {"config": str(REPO / "config" / "test.yaml"), "checkpoint": str(checkpoint), "pickle": str(not_a_pickle)}


def _args(files: dict[str, str], **overrides: str) -> list[str]:
    values = {
        "model_config_path": files["config"],
        "dataset_name": "davis",
        "dataset_path": files["pickle"],
        "model_checkpoint_path": files["checkpoint"],
        **overrides,
    }
    return [item for key, value in values.items() for item in (f"--{key}", value)]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"dataset_name": "sintel"}, "invalid choice: 'sintel'"),
        ({"dataset_path": "/nonexistent/davis.pkl"}, "--dataset_path: not found"),
        ({"model_checkpoint_path": "/nonexistent/model.pth"}, "--model_checkpoint_path: file not found"),
        ({"model_config_path": "/nonexistent/test.yaml"}, "--model_config_path: file not found"),
    ],
)
def test_bad_arguments_exit_with_usage_error(files, capsys, override: dict[str, str], message: str) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(_args(files, **override))
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_unreadable_dataset_is_reported_without_traceback(files) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "evaluation.eval", *_args(files), "--device", "cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "davis.pkl" in result.stderr
    assert "Traceback" not in result.stderr


def test_unusable_device_is_a_usage_error(files, capsys) -> None:
    with pytest.raises(SystemExit):
        main([*_args(files), "--device", "tpu:banana"])
    assert "--device" in capsys.readouterr().err
