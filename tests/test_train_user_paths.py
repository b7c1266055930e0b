"""``main.py`` as a user meets it: help for every override flag, a finished run that only says so, a DAVIS bar that
ends full, no DDP stride warning under torchrun, and Ctrl-C under torchrun ending with the resume line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training_data import write_training_data
from trackon2 import train as train_cli
from trackon2.model.yaml_schema import SCHEMA
from trackon2.utils.config_help import CONFIG_HELP

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"
TRAIN_KEYS = {"T": 4, "N": 8, "epoch_num": 1, "iters_per_epoch": 2, "save_every": 2, "num_workers": 0,
              "amp": False, "log_backend": "csv", "frame_sampling": "uniform", "frame_sample_ratio": 1.0, "bs": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return write_training_data(tmp_path_factory.mktemp("train_user"), TRAIN_KEYS, 3, 6, davis_frames=3,
                               davis_points=6)


def _argv(data, save_dir: Path, *extra: str) -> list[str]:
    return ["--config_path", str(data["config"]), "--movi_f_root", str(data["movi"]), "--tapvid_root",
            str(data["davis"]), "--model_save_path", str(save_dir), "--device", "cpu", *extra]


def test_every_override_flag_has_help(capsys):
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for key in SCHEMA:
        if key != "backbone_config":  # a mapping: YAML only
            assert f"--{key} " in text and " ".join(CONFIG_HELP[key].split()) in text, key
    assert "one of tensorboard, csv, wandb, none" in text


@pytest.mark.slow
def test_a_finished_run_only_says_so_and_the_davis_bar_ends_full(data, tmp_path, capsys):
    save_dir = tmp_path / "run"
    assert train_cli.main(_argv(data, save_dir)) == 0
    first = capsys.readouterr()
    assert "1/1" in first.err.replace("\r", "\n") and "0/1" not in first.err.replace("\r", "\n").splitlines()[-1]
    assert train_cli.main(_argv(data, save_dir)) == 0
    again = capsys.readouterr()
    assert "Nothing to train" in again.err
    assert "Training starts" not in again.out and "Best Results" not in again.out and "=== Epoch" not in again.out


def _torchrun(data, save_dir: Path, log: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "main.py",
                             *_argv(data, save_dir, *extra)], cwd=ROOT, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_torchrun_training_has_no_grad_stride_warning(data, tmp_path):
    log = tmp_path / "log.txt"
    assert _torchrun(data, tmp_path / "run", log).wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "Best Results" in text and "Grad strides do not match" not in text


@pytest.mark.slow
def test_ctrl_c_under_torchrun_ends_with_the_resume_line(data, tmp_path):
    log = tmp_path / "log.txt"
    process = _torchrun(data, tmp_path / "run", log, "--iters_per_epoch", "200", "--save_every", "none")
    deadline = time.monotonic() + 240
    while "epoch 0 |" not in log.read_text():  # training has started
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the whole foreground group
    process.wait(timeout=120)
    lines = []
    for _ in range(50):  # the line is printed just after torchrun exits
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        if lines and lines[-1].startswith("interrupted at epoch"):
            break
        time.sleep(0.1)
    assert "SignalException" in log.read_text()  # torchrun's own traceback comes first ...
    assert lines[-1].startswith("interrupted at epoch 0 iteration ")  # ... and the resume line after it
    assert lines[-1].endswith("/200; rerun the same command to resume")
    assert (tmp_path / "run" / "checkpoint.pt").exists()
