"""Long training runs lose nothing: mid-epoch checkpoints, exact resume, SIGINT/SIGTERM, clean logs, and one-line
errors for bad data and settings. Everything goes through ``main.main`` (the torchrun entry point) on the CPU with
the tiny model."""

from __future__ import annotations

import csv
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import trackon2.training.trainer as trainer_module
from tests.training_data import write_training_data
from trackon2 import train as train_cli
from trackon2.dataset.synthetic import generate_clip, tapvid_entry, write_movi_f

ROOT = Path(__file__).resolve().parents[1]
TRAIN_KEYS = {"T": 4, "N": 8, "epoch_num": 1, "iters_per_epoch": 4, "save_every": 2, "num_workers": 0,
              "amp": False, "log_backend": "csv", "frame_sampling": "uniform", "frame_sample_ratio": 1.0, "bs": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_reliability")
    return write_training_data(root, TRAIN_KEYS, 3, 6, davis_frames=3, davis_points=6)


def _argv(data, save_dir: Path, *extra: str, davis: Path | None = None, movi: Path | None = None) -> list[str]:
    return ["--config_path", str(data["config"]), "--movi_f_root", str(movi or data["movi"]),
            "--tapvid_root", str(davis or data["davis"]), "--model_save_path", str(save_dir), "--device", "cpu",
            *extra]


def _log_rows(save_dir: Path) -> list[list[str]]:
    """train_log.csv rows without the wall-clock column (iteration, epoch, the 7 losses, total, lr)."""
    with open(save_dir / "train_log.csv", newline="") as stream:
        return [row[:-1] for row in csv.reader(stream)]


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> Path:
    save_dir = tmp_path_factory.mktemp("full") / "run"
    assert train_cli.main(_argv(data, save_dir)) == 0
    return save_dir


def _signal_after(monkeypatch, steps: int, signal_number: int) -> None:
    """Deliver ``signal_number`` to this process right after the ``steps``-th optimisation step."""
    real_step, count = trainer_module.train_step, [0]

    def step_then_signal(*args, **kwargs):
        result = real_step(*args, **kwargs)
        count[0] += 1
        if count[0] == steps:
            os.kill(os.getpid(), signal_number)
        return result

    monkeypatch.setattr(trainer_module, "train_step", step_then_signal)


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_and_a_rerun_continues_exactly(data, uninterrupted, tmp_path, monkeypatch, capsys,
                                                    signal_number):
    save_dir = tmp_path / "run"
    _signal_after(monkeypatch, 3, signal_number)
    assert train_cli.main(_argv(data, save_dir)) == 128 + signal_number
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == \
        "interrupted at epoch 0 iteration 3/4; rerun the same command to resume"
    saved = _load(save_dir / "checkpoint.pt")
    assert (saved["epoch"], saved["iteration"], saved["epoch_iteration"]) == (0, 3, 3)
    monkeypatch.undo()

    assert train_cli.main(_argv(data, save_dir)) == 0
    assert "Resumed from" in capsys.readouterr().out
    assert _log_rows(save_dir) == _log_rows(uninterrupted)  # same losses, same lr, no row twice
    full, resumed = _load(uninterrupted / "checkpoint.pt"), _load(save_dir / "checkpoint.pt")
    assert resumed["iteration"] == full["iteration"] == 4
    assert _same_state(full["model"], resumed["model"])
    assert not list(save_dir.glob(".*.tmp"))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_epoch_gets_the_same_batches_with_any_number_of_workers(data, workers):
    from trackon2.dataset.movi_f import MoviFLarge
    from trackon2.model.yaml_schema import load_config
    from trackon2.training.data_stream import EpochSampler, make_epoch_loader

    args = load_config(data["config"], movi_f_root=str(data["movi"]))
    dataset = MoviFLarge.from_config(args)

    def batches(start: int, iters: int, num_workers: int, epoch: int = 1) -> list:
        sampler = EpochSampler(len(dataset), 1, args.seed)
        sampler.set_position(epoch=epoch, start=start, iters=iters)
        return list(make_epoch_loader(dataset, sampler, num_workers, pin_memory=False))

    whole = batches(0, 5, 0)  # 5 iterations over 3 clips: the second pass over the data has a new order
    tail = batches(2, 5, workers)
    assert len(tail) == 3
    for expected, got in zip(whole[2:], tail):
        assert all(torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b for a, b in zip(expected, got))
    other_epoch = batches(0, 5, 0, epoch=2)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(whole, other_epoch))  # each epoch draws anew


@pytest.mark.slow
def test_a_crash_loses_at_most_save_every_iterations(data, uninterrupted, tmp_path, monkeypatch, capsys):
    save_dir = tmp_path / "run"
    real_log = trainer_module.TrainingLogger.log_iteration

    def crash_after_logging_iteration_2(self, iteration, *args):
        real_log(self, iteration, *args)
        if iteration == 2:
            self.flush()
            raise RuntimeError("node lost")

    monkeypatch.setattr(trainer_module.TrainingLogger, "log_iteration", crash_after_logging_iteration_2)
    with pytest.raises(RuntimeError, match="node lost"):
        train_cli.main(_argv(data, save_dir))
    saved = _load(save_dir / "checkpoint.pt")
    assert (saved["epoch"], saved["iteration"], saved["epoch_iteration"]) == (0, 2, 2)  # save_every=2
    assert len(_log_rows(save_dir)) == 1 + 3  # header + iterations 0..2, the third after the last save
    (save_dir / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")  # as a kill during a save leaves
    monkeypatch.undo()

    assert train_cli.main(_argv(data, save_dir)) == 0
    out = capsys.readouterr().out
    assert "Removed" in out and ".checkpoint.pt.x1y2.tmp" in out and not list(save_dir.glob(".*.tmp"))
    assert _log_rows(save_dir) == _log_rows(uninterrupted)
    assert _same_state(_load(uninterrupted / "checkpoint.pt")["model"], _load(save_dir / "checkpoint.pt")["model"])


def test_finished_run_says_so_and_changed_settings_are_reported(data, uninterrupted, tmp_path, capsys):
    save_dir = tmp_path / "run"
    save_dir.mkdir()
    for name in ("checkpoint.pt", "train_log.csv"):
        (save_dir / name).write_bytes((uninterrupted / name).read_bytes())
    assert train_cli.main(_argv(data, save_dir, "--lr", "0.01", "--bs", "2")) == 0
    err = capsys.readouterr().err
    assert "Nothing to train" in err and "epoch_num=1" in err and "--epoch_num" in err
    assert "warning: resuming with lr=0.01, but the checkpoint was trained with lr=0.0005: the saved value " \
           "stays in effect" in err
    assert "warning: resuming with bs=2, but the checkpoint was trained with bs=1: the new value takes effect" in err
    assert _log_rows(save_dir) == _log_rows(uninterrupted)


def test_worker_errors_are_the_same_one_line_as_without_workers(data, tmp_path, capsys):
    movi = tmp_path / "movi_f"
    write_movi_f(movi, 2, seed=3, num_frames=6, height=80, width=112, num_points=24)
    for frame in movi.glob("*/frames/*.png"):
        frame.write_bytes(b"not a png")
    messages = []
    for workers in ("0", "2"):
        code = train_cli.main(_argv(data, tmp_path / f"run{workers}", "--num_workers", workers, movi=movi))
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and "Caught" not in err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and ".png: unreadable image" in err
        messages.append(err)
    assert messages[0] == messages[1]


@pytest.mark.slow
def test_an_evaluation_video_without_visible_points_does_not_lose_the_epoch(data, tmp_path, capsys):
    clip = generate_clip(100, num_frames=3, height=64, width=96, num_points=6)
    empty = tapvid_entry(clip)
    empty["occluded"][:] = True
    with open(tmp_path / "davis.pkl", "wb") as handle:
        pickle.dump({"a_good": tapvid_entry(clip), "b_empty": empty}, handle)
    save_dir = tmp_path / "run"
    assert train_cli.main(_argv(data, save_dir, "--epoch_num", "1", "--iters_per_epoch", "1",
                                davis=tmp_path / "davis.pkl")) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "Video 2/2 (davis.pkl['b_empty']): skipped: no point is visible in any frame" in out
    saved = _load(save_dir / "checkpoint.pt")
    assert saved["epoch"] == 1 and saved["best_aj"][0] == 0  # evaluated on the good video, saved


@pytest.mark.parametrize("extra, message", [
    (["--log_backend", "wandb"], "log_backend 'wandb' needs the wandb package"),
    (["--save_every", "0"], "'save_every' must be at least 1"),
    (["--K", "0"], "'K' must be at least 1"),
    (["--D", "30"], "'D' (30) must be divisible by 4"),
])
def test_unusable_settings_are_one_line(data, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as when it is not installed
    assert train_cli.main(_argv(data, tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_save_path_that_is_a_file_is_one_line(data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert train_cli.main(_argv(data, tmp_path / "file" / "run")) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is a Linux feature")
def test_trainer_saves_and_exits_when_the_torchrun_agent_dies(data, tmp_path):
    save_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "main.py",
               *_argv(data, save_dir, "--iters_per_epoch", "100000", "--save_every", "100000")]
    agent = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    lines: list[str] = []
    for line in agent.stdout:  # wait until the trainer is past its set-up
        lines.append(line)
        if "Training starts" in line:
            break
    reader = threading.Thread(target=lambda: lines.extend(agent.stdout), daemon=True)
    reader.start()
    time.sleep(2)
    trainers = _children(agent.pid)
    agent.kill()  # SIGKILL: the agent cannot forward anything to its trainer
    agent.wait()
    deadline = time.monotonic() + 120
    while any(map(_running, trainers)) and time.monotonic() < deadline:
        time.sleep(0.5)
    orphans = [pid for pid in trainers if _running(pid)]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert trainers and not orphans, "the trainer kept running after its agent died"
    reader.join(timeout=10)
    output = "".join(lines)
    assert "interrupted at epoch 0 iteration" in output, output[-2000:]
    saved = _load(save_dir / "checkpoint.pt")
    assert saved["epoch"] == 0 and saved["epoch_iteration"] == saved["iteration"] > 0


def test_ctrl_c_under_torchrun_still_saves_but_a_repeated_signal_stops_at_once(capsys):
    from trackon2.training.interrupts import StopRequests

    before = signal.getsignal(signal.SIGTERM)
    with StopRequests() as stop:  # torchrun on Ctrl-C: SIGINT from the terminal, then SIGTERM from the agent
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.agreed(torch.device("cpu"), distributed=False) == signal.SIGINT
    assert "SIGINT received: finishing the current iteration to save a checkpoint" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        with StopRequests():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handlers are back
