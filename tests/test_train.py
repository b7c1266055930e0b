"""Training: the torchrun entry point, exact resume, overfitting one clip, crash-safe checkpoints, CLI errors.

Everything runs on the CPU with the tiny model (input 64x96, random tiny ViT) on synthetic clips written in the
MOVi-F and TAP-Vid DAVIS layouts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tiny_model import tiny_config
from tests.training_data import write_training_data
from trackon2.model.config import ModelConfig
from trackon2.model.yaml_schema import load_config

ROOT = Path(__file__).resolve().parents[1]
TRAIN_KEYS = {"T": 4, "N": 8, "epoch_num": 1, "num_workers": 0, "amp": False, "log_backend": "csv",
              "frame_sampling": "uniform", "frame_sample_ratio": 1.0, "lr": 5e-4, "wd": 1e-5, "bs": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_data")
    return write_training_data(root, TRAIN_KEYS, 4, 8)


def _config(data, save_dir, **overrides):
    return load_config(data["config"], movi_f_root=str(data["movi"]), tapvid_root=str(data["davis"]),
                       model_save_path=str(save_dir), **overrides)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return env


def _cli(data, save_dir, *extra) -> list[str]:
    return ["main.py", "--config_path", str(data["config"]), "--movi_f_root", str(data["movi"]),
            "--tapvid_root", str(data["davis"]), "--model_save_path", str(save_dir), *extra]


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same(a, b, where="") -> None:
    """Recursive exact equality of nested checkpoint contents."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ------------------------------------------------------------------------------------------------ (a) torchrun
@pytest.mark.slow
def test_torchrun_two_processes_trains_and_saves(data, tmp_path):
    from trackon2.model.trackon_predictor import Predictor

    save_dir = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               *_cli(data, save_dir, "--iters_per_epoch", "2")]
    result = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "World size: 2" in result.stdout
    assert "Number of learnable parameters" in result.stdout
    for name in ("checkpoint.pt", "best_aj.pt", "best_oa.pt", "best_delta.pt"):
        assert (save_dir / name).is_file(), name
    checkpoint = _load(save_dir / "checkpoint.pt")
    assert checkpoint["epoch"] == 1 and checkpoint["iteration"] == 2
    assert checkpoint["best_aj"][0] == 0 and checkpoint["scaler"] is None
    assert not any(name.startswith("module.") for name in checkpoint["model"])
    lines = (save_dir / "train_log.csv").read_text().splitlines()
    assert lines[0].startswith("iteration,epoch,L_p,L_p2,L_vis,L_o,L_u,L_topk_u,L_topk_rank,loss,lr")
    assert len(lines) == 3  # header + one row per iteration, rank 0 only
    assert not list(save_dir.glob("*.tmp"))
    # The training checkpoint is a valid inference checkpoint.
    predictor = Predictor(_config(data, save_dir, M_i=24), checkpoint_path=save_dir / "checkpoint.pt")
    trajectory, visibility = predictor(torch.rand(1, 3, 3, 64, 96) * 255, torch.tensor([[[0.0, 40.0, 30.0]]]))
    assert trajectory.shape == (1, 3, 1, 2) and visibility.shape == (1, 3, 1)


# -------------------------------------------------------------------------------------------------- (b) resume
@pytest.mark.slow
def test_resumed_run_matches_uninterrupted_run(data, tmp_path):
    from trackon2.training.trainer import run

    full_dir, split_dir = tmp_path / "full", tmp_path / "split"
    run(_config(data, full_dir, epoch_num=2, iters_per_epoch=1), device="cpu")
    run(_config(data, split_dir, epoch_num=2, iters_per_epoch=1), max_epochs_per_run=1, device="cpu")
    first = _load(split_dir / "checkpoint.pt")
    assert first["epoch"] == 1 and first["iteration"] == 1
    # A fresh process picks up <model_save_path>/checkpoint.pt by itself.
    summary = run(_config(data, split_dir, epoch_num=2, iters_per_epoch=1), device="cpu")
    assert summary["iteration"] == 2
    full, resumed = _load(full_dir / "checkpoint.pt"), _load(split_dir / "checkpoint.pt")
    assert resumed["epoch"] == full["epoch"] == 2 and resumed["iteration"] == full["iteration"] == 2
    _assert_same(full["scheduler"], resumed["scheduler"], "scheduler")
    _assert_same(full["optimizer"], resumed["optimizer"], "optimizer")
    _assert_same(full["model"], resumed["model"], "model")
    for key in ("best_aj", "best_oa", "best_delta_avg"):
        assert full[key] == resumed[key]


def test_resume_from_explicit_checkpoint_path(data, tmp_path):
    from trackon2.model.config import ModelConfig
    from trackon2.model.trackon import TrackOn2
    from trackon2.training import checkpointing
    from trackon2.training.schedule import build_scheduler
    from trackon2.training.trainer import build_optimizer

    args = _config(data, tmp_path / "a", iters_per_epoch=2)
    model = TrackOn2(ModelConfig.from_namespace(args))
    optimizer = build_optimizer(model, args)
    scheduler = build_scheduler(optimizer, 10, 3)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    best = {"aj": [1, 50.0], "oa": [2, 80.0], "delta_avg": [1, 60.0]}
    path = tmp_path / "elsewhere.pt"
    checkpointing.atomic_save(checkpointing.make_checkpoint(model, optimizer, scheduler, None, 2, 7, best, args), path)
    assert checkpointing.resume_path(str(path), str(tmp_path / "missing")) == path
    assert checkpointing.resume_path(None, str(tmp_path / "missing")) is None

    other = TrackOn2(ModelConfig.from_namespace(args))
    other_optimizer = build_optimizer(other, args)
    other_scheduler = build_scheduler(other_optimizer, 10, 3)
    run_vars = checkpointing.restore(path, other, other_optimizer, other_scheduler, None)
    assert run_vars["args"]["lr"] == args.lr
    assert {k: run_vars[k] for k in ("epoch", "iteration", "epoch_iteration", "best")} == \
        {"epoch": 2, "iteration": 7, "epoch_iteration": 0, "best": best}
    assert other_scheduler.state_dict() == scheduler.state_dict()
    assert other_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    _assert_same(model.state_dict(), other.state_dict())


# ------------------------------------------------------------------------------------------------ (c) overfit
@pytest.mark.slow
def test_overfitting_one_clip_drives_the_loss_down(data):
    from trackon2.dataset.movi_f import MoviFLarge
    from trackon2.model.loss import LossFunction
    from trackon2.model.trackon import TrackOn2
    from trackon2.training.schedule import build_scheduler
    from trackon2.training.trainer import TrainState, build_optimizer, train_step

    torch.manual_seed(0)
    args = _config(data, data["root"] / "unused", lr=1e-3)
    video, tracks, visibility, k = MoviFLarge.from_config(args, use_augs=False)[0]
    video, tracks, visibility = video[None], tracks[None, :, :k], visibility[None, :, :k]
    model = TrackOn2(ModelConfig.from_namespace(args))
    optimizer = build_optimizer(model, args)
    iterations = 20
    state = TrainState(model, optimizer, build_scheduler(optimizer, iterations, 1), None, LossFunction.from_config(args),
                       torch.device("cpu"), amp=False)
    losses = [train_step(state, video, tracks, visibility, args.input_size).loss for _ in range(iterations)]
    print("overfit losses:", " ".join(f"{loss:.2f}" for loss in losses))
    start, end = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert end < 0.6 * start, f"loss went from {start:.2f} to {end:.2f}"


# ------------------------------------------------------------------------------------------- (d) crash safety
def test_interrupted_save_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    from trackon2.model.trackon import TrackOn2
    from trackon2.model.trackon_predictor import Predictor
    from trackon2.training import checkpointing
    from trackon2.training.schedule import build_scheduler
    from trackon2.training.trainer import build_optimizer

    args = _config(data, tmp_path)
    model = TrackOn2(ModelConfig.from_namespace(args))
    optimizer = build_optimizer(model, args)
    scheduler = build_scheduler(optimizer, 4, 1)
    best = checkpointing.initial_best()
    improved = checkpointing.update_best(best, {"aj": 10.0, "oa": 20.0, "delta_avg": 30.0}, 0)
    good = checkpointing.make_checkpoint(model, optimizer, scheduler, None, 1, 4, best, args)
    checkpointing.save_checkpoints(good, tmp_path, improved)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    real_save = torch.save

    def failing_save(obj, stream, *args, **kwargs):
        real_save(obj, stream, *args, **kwargs)
        stream.seek(len(before) // 2)
        stream.truncate()  # half a file on disk, then the "crash"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    newer = checkpointing.make_checkpoint(model, optimizer, scheduler, None, 2, 8, best, args)
    with pytest.raises(OSError, match="disk full"):
        checkpointing.save_checkpoints(newer, tmp_path, {"aj": True, "oa": True, "delta_avg": True})
    monkeypatch.setattr(torch, "save", real_save)

    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_aj.pt", "best_delta.pt", "best_oa.pt",
                                                           "checkpoint.pt"]
    restored = _load(tmp_path / "checkpoint.pt")
    assert restored["epoch"] == 1 and restored["iteration"] == 4
    Predictor(args, checkpoint_path=tmp_path / "best_aj.pt")  # still loadable


def test_update_best_is_strict_and_per_metric():
    from trackon2.training.checkpointing import initial_best, update_best

    best = initial_best()
    assert update_best(best, {"aj": 1.0, "oa": 2.0, "delta_avg": 3.0}, 0) == {"aj": True, "oa": True, "delta_avg": True}
    assert update_best(best, {"aj": 1.0, "oa": 5.0, "delta_avg": 2.0}, 1) == {"aj": False, "oa": True, "delta_avg": False}
    assert best == {"aj": [0, 1.0], "oa": [1, 5.0], "delta_avg": [0, 3.0]}


# ----------------------------------------------------------------------------------------- queries, schedule
def test_queries_follow_the_reference_rule():
    from trackon2.training.queries import sample_queries

    torch.manual_seed(0)
    batch, frames, tracks_n = 3, 6, 12
    tracks = torch.rand(batch, frames, tracks_n, 2) * 50
    visibility = torch.rand(batch, frames, tracks_n) > 0.5
    visibility[:, 4] = True  # every track visible somewhere
    first = visibility.to(torch.uint8).argmax(dim=1)
    seen_random = set()
    for _ in range(20):
        queries = sample_queries(tracks, visibility)
        times = queries[..., 0].long()
        assert torch.equal(times[:, tracks_n // 4:], first[:, tracks_n // 4:])
        assert visibility.gather(1, times[:, None]).all()
        expected = tracks.gather(1, times[:, None, :, None].expand(-1, 1, -1, 2)).squeeze(1)
        assert torch.equal(queries[..., 1:], expected)
        seen_random.update(times[:, : tracks_n // 4].flatten().tolist())
    assert len(seen_random) > 1
    with pytest.raises(ValueError):
        sample_queries(tracks, torch.zeros_like(visibility))


def test_schedule_warms_up_then_decays():
    from trackon2.training.schedule import build_scheduler

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=5e-4)
    scheduler = build_scheduler(optimizer, iters_per_epoch=100, epoch_num=3)  # 300 steps, 3 of warm-up
    lrs = []
    for _ in range(300):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(5e-9)
    assert lrs[3] == pytest.approx(5e-4)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    assert lrs[-1] < 1e-6


# ---------------------------------------------------------------------------------------------- CLI errors
@pytest.mark.parametrize("change, message", [
    ({"movi": "does/not/exist"}, "--movi_f_root: folder not found"),
    ({"davis": "does/not/exist.pkl"}, "--tapvid_root: not found"),
    ({"extra": ["--checkpoint_path", "nope.pt"]}, "--checkpoint_path: file not found"),
    ({"extra": ["--config_path", "nope.yaml"]}, "config file not found"),
])
@pytest.mark.slow
def test_cli_reports_setup_errors_in_one_line(data, tmp_path, change, message):
    paths = {"movi": str(data["movi"]), "davis": str(data["davis"])}
    paths.update({k: v for k, v in change.items() if k != "extra"})
    command = [sys.executable, "main.py", "--config_path", str(data["config"]), "--movi_f_root", paths["movi"],
               "--tapvid_root", paths["davis"], "--model_save_path", str(tmp_path / "out"), *change.get("extra", [])]
    result = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_rejects_a_bad_config_key(data, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(data["config"].read_text() + "learning_rate: 0.1\n")
    command = [sys.executable, "main.py", "--config_path", str(bad), "--movi_f_root", str(data["movi"]),
               "--tapvid_root", str(data["davis"]), "--model_save_path", str(tmp_path / "out")]
    result = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown key" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------------------ logging
@pytest.mark.parametrize("backend", ["tensorboard", "csv", "none"])
def test_logger_backends(tmp_path, backend):
    from trackon2.training.logging import LOSS_NAMES, TrainingLogger

    args = tiny_config(log_backend=backend, model_save_path=str(tmp_path))
    logger = TrainingLogger(args, rank=0)
    for iteration in range(3):
        logger.log_iteration(iteration, 0, {name: 1.0 + iteration for name in LOSS_NAMES}, 1e-4, 0.5)
    logger.log_evaluation(0, {"aj": 1.0, "oa": 2.0, "delta_avg": 3.0})
    logger.close()
    if backend == "tensorboard":
        assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    elif backend == "csv":
        rows = (tmp_path / "train_log.csv").read_text().splitlines()
        assert len(rows) == 4 and rows[-1].split(",")[9] == "21"  # 7 terms x 3.0
        assert (tmp_path / "eval_log.csv").read_text().splitlines()[1] == "0,1.0000,2.0000,3.0000"
    else:
        assert not list(tmp_path.iterdir())
    silent = TrainingLogger(tiny_config(log_backend=backend, model_save_path=str(tmp_path / "r1")), rank=1)
    silent.log_iteration(0, 0, {name: 1.0 for name in LOSS_NAMES}, 1e-4, 0.5)
    silent.close()
    assert not (tmp_path / "r1").exists()


def test_logger_falls_back_to_csv_without_tensorboard(tmp_path, monkeypatch):
    from trackon2.training.logging import LOSS_NAMES, TrainingLogger

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        logger = TrainingLogger(tiny_config(log_backend="tensorboard", model_save_path=str(tmp_path)), rank=0)
    logger.log_iteration(0, 0, {name: 1.0 for name in LOSS_NAMES}, 1e-4, 0.5)
    logger.close()
    assert len((tmp_path / "train_log.csv").read_text().splitlines()) == 2


def test_cli_overrides_config_keys(data):
    from trackon2 import train as main

    cli, overrides = main.parse_args(["--config_path", str(data["config"]), "--epoch_num", "3", "--amp", "true",
                                      "--input_size", "32", "64", "--lr", "1e-3", "--iters_per_epoch", "5"])
    assert overrides == {"epoch_num": 3, "amp": True, "input_size": [32, 64], "lr": 1e-3, "iters_per_epoch": 5}
    config = main.load_training_config(str(data["config"]), overrides)
    assert (config.epoch_num, config.amp, config.input_size, config.lr) == (3, True, [32, 64], 1e-3)
    _, overrides = main.parse_args(["--config_path", str(data["config"]), "--iters_per_epoch", "none"])
    assert main.load_training_config(str(data["config"]), {"iters_per_epoch": 4, **overrides}).iters_per_epoch is None
