"""Resuming from a checkpoint in the layout the reference's trainer writes (gorkaydemir/track_on, main.py).

The reference's optimizer is an AdamW over ``filter(requires_grad, model.parameters())`` of its own module tree; here
that order is taken from ``tests/fixtures/official_state_dict_keys.tsv`` (the reference's state-dict order; the
tiny model's trainable names are a subset of it), not from our model, so a wrong order in our model would fail.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training_data import write_training_data
from trackon2.model.checkpoint import CheckpointError
from trackon2.model.config import ModelConfig
from trackon2.model.trackon import TrackOn2
from trackon2.model.yaml_schema import load_config
from trackon2.training import checkpointing
from trackon2.training.schedule import build_scheduler
from trackon2.training.trainer import build_optimizer

FIXTURE = Path(__file__).parent / "fixtures" / "official_state_dict_keys.tsv"
BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")
TRAIN_KEYS = {"T": 4, "N": 8, "epoch_num": 3, "iters_per_epoch": 2, "num_workers": 0, "amp": False,
              "log_backend": "none", "frame_sampling": "uniform", "frame_sample_ratio": 1.0, "lr": 5e-4, "wd": 1e-5,
              "bs": 1}
REF_EPOCH, REF_ITERATION = 2, 4
REF_BEST = {"best_aj": [1, np.float64(12.5)], "best_oa": [0, np.float64(55.25)],
            "best_delta_avg": [1, np.float64(20.0)]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reference_resume")
    return write_training_data(root, TRAIN_KEYS, 2, 6)


def _config(data, save_dir: Path, **overrides):
    return load_config(data["config"], movi_f_root=str(data["movi"]), tapvid_root=str(data["davis"]),
                       model_save_path=str(save_dir), **overrides)


def reference_parameter_order(model: torch.nn.Module) -> list[str]:
    """The model's trainable parameter names in the reference's ``parameters()`` order."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    rows = [row.split("\t") for row in FIXTURE.read_text().splitlines()]
    order = [name for config, name, _ in rows if config == "dinov2_s" and name in trainable]
    assert set(order) == trainable
    return order


def reference_scheduler(optimizer: torch.optim.Optimizer, iters_per_epoch: int, epoch_num: int):
    """The reference's ``get_scheduler``: its warm-up may be 0 steps (int(1%) of a short run)."""
    total = iters_per_epoch * epoch_num
    warmup = int(total * 0.01)
    linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-5, total_iters=warmup)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, schedulers=[linear, cosine], milestones=[warmup])


def make_reference_checkpoint(args, seed: int = 7):
    """A tiny model, its AdamW (reference order) after REF_ITERATION steps with random gradients, in the reference's
    layout. Returns (checkpoint, model, {name: parameter}, optimizer, scheduler)."""
    torch.manual_seed(seed)
    model = TrackOn2(ModelConfig.from_namespace(args))
    named = dict(model.named_parameters())
    ordered = [named[name] for name in reference_parameter_order(model)]
    optimizer = torch.optim.AdamW(ordered, lr=args.lr, weight_decay=args.wd)
    scheduler = reference_scheduler(optimizer, args.iters_per_epoch, args.epoch_num)
    for _ in range(REF_ITERATION):
        for parameter in ordered:
            parameter.grad = torch.randn_like(parameter)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    checkpoint = {
        "model": {f"module.{name}": value for name, value in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": None,
        "epoch": REF_EPOCH,
        **REF_BEST,
        "iteration": REF_ITERATION,
    }
    return checkpoint, model, named, optimizer, scheduler


@pytest.fixture()
def reference_file(data, tmp_path):
    args = _config(data, tmp_path / "unused")
    checkpoint, model, named, optimizer, scheduler = make_reference_checkpoint(args)
    path = tmp_path / "reference_checkpoint.pt"
    torch.save(checkpoint, path)
    return {"path": path, "checkpoint": checkpoint, "model": model, "named": named, "optimizer": optimizer,
            "scheduler": scheduler, "args": args}


def _fresh(args):
    torch.manual_seed(99)
    model = TrackOn2(ModelConfig.from_namespace(args))
    optimizer = build_optimizer(model, args)
    return model, optimizer, build_scheduler(optimizer, args.iters_per_epoch, args.epoch_num)


@pytest.mark.slow
def test_reference_checkpoint_restores_model_moments_lr_epoch_and_best(reference_file):
    ref = reference_file
    model, optimizer, scheduler = _fresh(ref["args"])
    run_vars = checkpointing.restore(ref["path"], model, optimizer, scheduler, None)

    assert run_vars["epoch"] == REF_EPOCH and run_vars["iteration"] == REF_ITERATION
    assert run_vars["best"] == {"aj": [1, 12.5], "oa": [0, 55.25], "delta_avg": [1, 20.0]}
    reference_state = ref["model"].state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, reference_state[name]), name
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            assert parameter not in optimizer.state
            continue
        ours, theirs = optimizer.state[parameter], ref["optimizer"].state[ref["named"][name]]
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(ours[key], theirs[key]), f"{name}.{key}"
    assert optimizer.param_groups[0]["lr"] == ref["optimizer"].param_groups[0]["lr"]
    # The schedule continues as the reference's would (its 0-step warm-up and T_max included).
    for _ in range(3):
        optimizer.step()
        scheduler.step()
        ref["optimizer"].step()
        ref["scheduler"].step()
        assert optimizer.param_groups[0]["lr"] == ref["optimizer"].param_groups[0]["lr"]


@pytest.mark.slow
def test_training_continues_from_a_reference_checkpoint_as_from_our_own(data, reference_file, tmp_path):
    """One more epoch from the reference file equals one more epoch from the same state in our layout."""
    from trackon2.training.trainer import run

    ref = reference_file
    model, optimizer, scheduler = _fresh(ref["args"])
    checkpointing.restore(ref["path"], model, optimizer, scheduler, None)
    best = {"aj": [1, 12.5], "oa": [0, 55.25], "delta_avg": [1, 20.0]}
    ours_path = tmp_path / "ours.pt"
    checkpointing.atomic_save(checkpointing.make_checkpoint(model, optimizer, scheduler, None, REF_EPOCH,
                                                            REF_ITERATION, best, ref["args"]), ours_path)
    outputs = {}
    for label, source in (("reference", ref["path"]), ("ours", ours_path)):
        save_dir = tmp_path / label
        run(_config(data, save_dir, checkpoint_path=str(source)), device="cpu")
        outputs[label] = torch.load(save_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    a, b = outputs["reference"], outputs["ours"]
    assert a["epoch"] == b["epoch"] == REF_EPOCH + 1
    assert a["iteration"] == b["iteration"] == REF_ITERATION + TRAIN_KEYS["iters_per_epoch"]
    assert a["scheduler"] == b["scheduler"]
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for index, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b["optimizer"]["state"][index]["exp_avg"]), index


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    (lambda c: c.pop("epoch"), "reference training checkpoint lacks ['epoch']"),
    (lambda c: c.pop("iteration"), "reference training checkpoint lacks ['iteration']"),
    (lambda c: c.update(best_aj=12.5), "'best_aj' must be [epoch, score]"),
    (lambda c: c["optimizer"]["param_groups"][0]["params"].pop(), "optimizer holds [410] parameters per group"),
    (lambda c: c["optimizer"]["state"].update({0: c["optimizer"]["state"][5]}), "parameter order differs"),
    (lambda c: c["model"].pop("module.fpn.output.0.weight"), "1 missing key(s)"),
])
def test_malformed_reference_checkpoint_is_refused_in_one_line(data, reference_file, tmp_path, damage, message):
    from trackon2 import train as main

    checkpoint = reference_file["checkpoint"]
    damage(checkpoint)
    path = tmp_path / "damaged.pt"
    torch.save(checkpoint, path)
    stderr = io.StringIO()
    argv = ["--config_path", str(data["config"]), "--movi_f_root", str(data["movi"]), "--tapvid_root",
            str(data["davis"]), "--model_save_path", str(tmp_path / "out"), "--checkpoint_path", str(path),
            "--device", "cpu"]
    with redirect_stderr(stderr):
        assert main.main(argv) == main.EXIT_SETUP_ERROR
    lines = stderr.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


@pytest.mark.slow
def test_restore_refuses_an_optimizer_state_in_another_order(reference_file):
    ref = reference_file
    model, optimizer, scheduler = _fresh(ref["args"])
    checkpoint = dict(ref["checkpoint"])
    state = ref["optimizer"].state_dict()
    state["state"] = {index: state["state"][len(state["state"]) - 1 - index] for index in state["state"]}
    checkpoint["optimizer"] = state
    path = ref["path"].with_name("reversed.pt")
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="parameter order differs"):
        checkpointing.restore(path, model, optimizer, scheduler, None)


def test_legacy_order_puts_each_blocks_feed_forward_before_its_attention():
    from trackon2.training.reference_checkpoint import legacy_parameter_order

    names = ["t", "x.0.mha.in_proj_weight", "x.0.mha.out_proj.bias", "x.0.linear1.weight", "x.0.norm2.bias",
             "x.1.mha.in_proj_weight", "x.1.linear1.weight", "x.10.mha.in_proj_weight", "x.10.linear2.bias",
             "x_layer.weight"]
    assert legacy_parameter_order(names) == [
        "t", "x.0.linear1.weight", "x.0.norm2.bias", "x.0.mha.in_proj_weight", "x.0.mha.out_proj.bias",
        "x.1.linear1.weight", "x.1.mha.in_proj_weight", "x.10.linear2.bias", "x.10.mha.in_proj_weight",
        "x_layer.weight"]


@pytest.mark.slow
def test_our_checkpoint_from_before_the_reorder_still_resumes(reference_file, tmp_path):
    """Our files without ``parameter_order`` listed optimizer states in the old order; they are renumbered."""
    from trackon2.training.reference_checkpoint import PARAMETER_ORDER_KEY, legacy_parameter_order

    args = reference_file["args"]
    torch.manual_seed(3)
    old_model = TrackOn2(ModelConfig.from_namespace(args))
    named = dict(old_model.named_parameters())
    current = [name for name, p in old_model.named_parameters() if p.requires_grad]
    old_optimizer = torch.optim.AdamW([named[n] for n in legacy_parameter_order(current)], lr=args.lr)
    old_scheduler = build_scheduler(old_optimizer, args.iters_per_epoch, args.epoch_num)
    for parameter in named.values():
        parameter.grad = torch.randn_like(parameter) if parameter.requires_grad else None
    old_optimizer.step()
    old_scheduler.step()
    best = checkpointing.initial_best()
    checkpoint = checkpointing.make_checkpoint(old_model, old_optimizer, old_scheduler, None, 1, 1, best, args)
    del checkpoint[PARAMETER_ORDER_KEY]
    path = tmp_path / "old.pt"
    torch.save(checkpoint, path)

    model, optimizer, scheduler = _fresh(args)
    assert checkpointing.restore(path, model, optimizer, scheduler, None)["epoch"] == 1
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert torch.equal(optimizer.state[parameter]["exp_avg"], old_optimizer.state[named[name]]["exp_avg"])


@pytest.mark.slow
def test_export_to_the_reference_layout_and_back(reference_file, tmp_path, capsys):
    from trackon2.training.reference_checkpoint import REFERENCE_KEYS
    from trackon2.training.reference_checkpoint import main as export

    args = reference_file["args"]
    model, optimizer, scheduler = _fresh(args)
    checkpointing.restore(reference_file["path"], model, optimizer, scheduler, None)
    ours = tmp_path / "ours.pt"
    best = {"aj": [1, 12.5], "oa": [0, 55.25], "delta_avg": [1, 20.0]}
    checkpointing.atomic_save(checkpointing.make_checkpoint(model, optimizer, scheduler, None, REF_EPOCH,
                                                            REF_ITERATION, best, args), ours)
    exported = tmp_path / "for_reference.pt"
    assert export([str(ours), str(exported)]) == 0
    written = torch.load(exported, map_location="cpu", weights_only=True)
    assert tuple(written) == REFERENCE_KEYS
    assert all(name.startswith("module.") for name in written["model"])
    original = reference_file["checkpoint"]
    assert written["optimizer"]["param_groups"][0]["params"] == original["optimizer"]["param_groups"][0]["params"]
    for index, state in original["optimizer"]["state"].items():
        assert torch.equal(written["optimizer"]["state"][index]["exp_avg"], state["exp_avg"])
    for name, value in original["model"].items():
        assert torch.equal(written["model"][name], value), name
    assert export([str(reference_file["path"].with_name("missing.pt")), str(tmp_path / "x.pt")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.slow
def test_unmarked_checkpoint_already_in_the_current_order_is_not_renumbered(reference_file, tmp_path):
    from trackon2.training.reference_checkpoint import PARAMETER_ORDER_KEY

    args = reference_file["args"]
    model, optimizer, scheduler = _fresh(args)
    checkpointing.restore(reference_file["path"], model, optimizer, scheduler, None)
    checkpoint = checkpointing.make_checkpoint(model, optimizer, scheduler, None, 1, 1, checkpointing.initial_best(),
                                               args)
    del checkpoint[PARAMETER_ORDER_KEY]
    path = tmp_path / "unmarked.pt"
    torch.save(checkpoint, path)
    other, other_optimizer, other_scheduler = _fresh(args)
    checkpointing.restore(path, other, other_optimizer, other_scheduler, None)
    for (name, parameter), theirs in zip(other.named_parameters(), model.parameters()):
        if parameter.requires_grad:
            assert torch.equal(other_optimizer.state[parameter]["exp_avg"], optimizer.state[theirs]["exp_avg"]), name
