"""Each config switch that restores the reference's behaviour where ours deliberately differs (README, Deviations),
and the augmentation details that now match the reference exactly (hue step, OpenCV resize)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_model import TINY_DINOV3, tiny_config, tiny_model_config
from trackon2.dataset.image_ops import _shift_hue, resize_bilinear
from trackon2.dataset.movi_f import MoviFLarge
from trackon2.dataset.movi_f_sampling import sample_frame_indices
from trackon2.dataset.synthetic import write_movi_f
from trackon2.model.loss import LossFunction
from trackon2.model.trackon import TrackOn2
from trackon2.model.yaml_schema import ConfigError, config_from_mapping
from trackon2.training.logging import TrainingLogger, logged_values
from trackon2.training.schedule import build_scheduler

LOSSES = {"L_p": 3.0, "L_p2": 2.0, "L_vis": 0.5, "L_o": 1.0, "L_u": 0.25, "L_topk_u": 0.125, "L_topk_rank": 0.75}


@pytest.mark.parametrize("key, value", [
    ("frozen_vit_train_mode", "yes"), ("random_frames_sorted", 1), ("empty_mask_loss", "none"),
    ("min_warmup_steps", -1), ("min_warmup_steps", 0.5), ("logged_total_loss", "mean"),
])
def test_switches_are_validated(key, value):
    with pytest.raises(ConfigError, match=key):
        config_from_mapping({key: value})


def test_defaults_are_ours():
    config = config_from_mapping({})
    assert (config.frozen_vit_train_mode, config.random_frames_sorted, config.empty_mask_loss,
            config.min_warmup_steps, config.logged_total_loss) == (False, True, "zero", 1, "sum")


# ---------------------------------------------------------------------------------------- frozen_vit_train_mode
@pytest.mark.parametrize("switch", [False, True])
def test_frozen_vit_train_mode(switch):
    torch.manual_seed(0)
    model = TrackOn2(tiny_model_config(vit_backbone="dinov3_s", backbone_config=dict(TINY_DINOV3)),
                     vit_train_mode=switch).train()
    adapter = model.backbone.vit_encoder
    assert adapter.training and adapter.spm.training
    assert adapter.vit.training is switch
    assert not any(p.requires_grad for p in adapter.vit.parameters())
    frames = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        first, second = (adapter.vit(pixel_values=frames).last_hidden_state for _ in range(2))
    # In training mode DINOv3 rescales its rotary position embedding at random (pos_embed_rescale = 2).
    assert torch.equal(first, second) is not switch
    model.eval()
    assert not adapter.vit.training


# ----------------------------------------------------------------------------------------- random_frames_sorted
def test_random_frames_in_drawn_order_as_the_reference():
    total, count, ratio = 40, 8, 2.0
    expected_rng = np.random.default_rng(5)
    start = int(expected_rng.integers(0, total - 16))
    drawn = start + expected_rng.choice(16, count, replace=False)
    shuffled = sample_frame_indices(total, count, "random", ratio, np.random.default_rng(5), sort_random=False)
    ordered = sample_frame_indices(total, count, "random", ratio, np.random.default_rng(5))
    assert np.array_equal(shuffled, drawn) and np.any(np.diff(shuffled) < 0)
    assert np.array_equal(ordered, np.sort(drawn))


@pytest.mark.parametrize("switch", [False, True])
def test_movi_f_reader_follows_random_frames_sorted(tmp_path, switch):
    write_movi_f(tmp_path, 1, seed=0, num_frames=24, height=80, width=112, num_points=12)
    args = tiny_config(movi_f_root=str(tmp_path), T=6, N=8, frame_sampling="random", frame_sample_ratio=3.0,
                       random_frames_sorted=switch)
    dataset = MoviFLarge.from_config(args)
    tracks, visible = dataset.read_annotation(0)
    _, clip_tracks, _ = dataset.load_clip(0, np.random.default_rng(11))
    chosen = sample_frame_indices(24, 6, "random", 3.0, np.random.default_rng(11), sort_random=switch)
    assert np.array_equal(clip_tracks, tracks[chosen])
    assert bool(np.all(np.diff(chosen) > 0)) is switch


# ------------------------------------------------------------------------------------------------ empty_mask_loss
def _loss_inputs(size=(32, 32), frames=3, num=2, k=2, layers=2):
    torch.manual_seed(0)
    patches = (size[0] // 4) * (size[1] // 4)
    out = {"C1": torch.randn(1, frames, num, patches), "C2": torch.randn(1, frames, num, patches),
           "O": torch.randn(1, frames, layers, num, 2), "P_patch": torch.rand(1, frames, num, 2) * 32,
           "V_logit": torch.randn(1, frames, num), "U_logit": torch.randn(1, frames, num),
           "U_logit_top_k": torch.randn(1, frames, num, k), "S_logit_top_k": torch.randn(1, frames, num, k),
           "P_patch_top_k": torch.rand(1, frames, num, k, 2) * 32}
    tracks = torch.rand(1, frames, num, 2) * 32
    visibility = torch.zeros(1, frames, num, dtype=torch.bool)
    visibility[:, 0] = True  # visible only on the query frame: no point is supervised after it
    return out, tracks, visibility, torch.zeros(1, num, dtype=torch.long)


def test_empty_mask_loss_zero_or_nan_as_the_reference():
    ours = LossFunction.from_config(tiny_config(input_size=[32, 32]))(*_loss_inputs())
    reference = LossFunction.from_config(tiny_config(input_size=[32, 32], empty_mask_loss="nan"))(*_loss_inputs())
    point_terms = ("L_p", "L_p2", "L_o", "L_topk_rank")  # averages over visible points after the query
    for name, a in ours.items():
        b = reference[name]
        if name in point_terms:
            assert a.item() == 0.0 and math.isnan(b.item())
        else:
            assert a.item() == b.item() and math.isfinite(a.item()) and a.item() > 0


# ---------------------------------------------------------------------------------------------- min_warmup_steps
def _lrs(scheduler_factory, steps: int) -> list[float]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
    scheduler = scheduler_factory(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def _reference_scheduler(optimizer, total: int):
    warmup = int(total * 0.01)
    linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-5, total_iters=warmup)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, schedulers=[linear, cosine], milestones=[warmup])


@pytest.mark.parametrize("iters_per_epoch, epochs", [(10, 5), (100, 3)])
def test_min_warmup_steps_zero_is_the_reference_schedule(iters_per_epoch, epochs):
    total = iters_per_epoch * epochs
    reference = _lrs(lambda o: _reference_scheduler(o, total), total)
    assert _lrs(lambda o: build_scheduler(o, iters_per_epoch, epochs, min_warmup_steps=0), total) == reference
    ours = _lrs(lambda o: build_scheduler(o, iters_per_epoch, epochs), total)
    assert (ours == reference) is (total >= 100)  # the default differs only where int(1%) is 0


# --------------------------------------------------------------------------------------------- logged_total_loss
def test_logged_total_sum_or_reference_formula():
    values, total = logged_values(LOSSES, "sum")
    assert values == LOSSES and total == sum(LOSSES.values())
    with pytest.warns(UserWarning, match="L_vis is nan"):
        values, total = logged_values({**LOSSES, "L_vis": float("nan")}, "reference")
    assert values["L_vis"] == 0.0
    assert total == 2 * LOSSES["L_p"] + LOSSES["L_o"] + LOSSES["L_u"] + LOSSES["L_topk_u"] + LOSSES["L_topk_rank"]


@pytest.mark.parametrize("style", ["sum", "reference"])
def test_logger_writes_the_chosen_total(tmp_path, style):
    logger = TrainingLogger(tiny_config(log_backend="csv", model_save_path=str(tmp_path), logged_total_loss=style))
    logger.log_iteration(0, 0, LOSSES, 1e-4, 0.5)
    logger.close()
    header, row = (tmp_path / "train_log.csv").read_text().splitlines()
    total = float(dict(zip(header.split(","), row.split(",")))["loss"])
    assert total == pytest.approx(logged_values(LOSSES, style)[1]) and total != pytest.approx(
        logged_values(LOSSES, "reference" if style == "sum" else "sum")[1])


# ------------------------------------------------------------------------------------- augmentation arithmetic
def test_hue_shift_truncates_like_torchvision():
    """torchvision adds ``np.array(hue_factor * 255).astype(np.uint8)``: 12.75 -> 12 and -12.75 -> -12 (not 13)."""
    frame = np.random.default_rng(1).integers(0, 256, (4, 5, 3)).astype(np.uint8)
    image = Image.fromarray(frame)
    h, s, v = image.convert("HSV").split()
    for factor, step in ((0.05, 12), (-0.05, -12), (0.0795, 20)):
        hue = Image.fromarray(((np.asarray(h, dtype=np.int16) + step) % 256).astype(np.uint8), "L")
        expected = np.asarray(Image.merge("HSV", (hue, s, v)).convert("RGB"))
        assert np.array_equal(np.asarray(_shift_hue(image, factor)), expected)


def test_resize_is_opencv_inter_linear():
    frame = np.random.default_rng(0).integers(0, 256, (37, 53, 3)).astype(np.float32)
    for height, width in ((50, 70), (29, 41)):
        expected = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(resize_bilinear(frame, height, width), expected)


def test_patch_scores_are_divided_by_the_temperature_in_their_own_dtype():
    """Under fp16 autocast the reference divides the fp16 scores by 0.05 before the (fp32) cross-entropy."""
    out, tracks, visibility, query_times = _loss_inputs()
    visibility[:] = True
    out["C1"] = (out["C1"] * 0.3).half()
    loss_fn = LossFunction.from_config(tiny_config(input_size=[32, 32]))
    targets = loss_fn.patch_indices(tracks).flatten()
    expected = torch.nn.functional.cross_entropy((out["C1"].flatten(0, 2) / 0.05).float(), targets,
                                                 reduction="none")
    mask = (torch.arange(3).view(1, -1, 1) > query_times.unsqueeze(1)).expand(1, 3, 2).flatten()
    expected = expected[mask].mean() * loss_fn.lambda_patch_cls
    assert loss_fn(out, tracks, visibility, query_times)["L_p"].item() == expected.item()
