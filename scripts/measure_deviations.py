"""Measure the effect of each deviation from the reference (README, "Deviations from the reference") on the CPU.

    python scripts/measure_deviations.py

Uses the tests' tiny random-weight model (input 64x96) and synthetic MOVi-F clips, so the numbers show the size and
kind of each effect, not what it would be with pretrained weights on the real data.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.tiny_model import TINY_DINOV3, tiny_config  # noqa: E402
from trackon2.dataset.movi_f import MoviFLarge  # noqa: E402
from trackon2.dataset.movi_f_sampling import sample_frame_indices  # noqa: E402
from trackon2.dataset.synthetic import write_movi_f  # noqa: E402
from trackon2.model.config import ModelConfig
from trackon2.model.loss import LOSS_NAMES, LossFunction  # noqa: E402
from trackon2.model.trackon import TrackOn2  # noqa: E402
from trackon2.training.logging import logged_values  # noqa: E402
from trackon2.training.queries import sample_queries  # noqa: E402
from trackon2.training.schedule import build_scheduler  # noqa: E402
from trackon2.training.trainer import build_optimizer, scale_tracks  # noqa: E402


def training_losses(model: TrackOn2, args, video, tracks, visibility, seed: int = 0) -> list[float]:
    """The seven losses of one training forward (p_mask 0.1) with a fixed seed."""
    torch.manual_seed(seed)
    queries = sample_queries(tracks, visibility)
    out = model(video, queries, p_mask=0.1)
    terms = LossFunction.from_config(args)(out, scale_tracks(tracks, video, args.input_size), visibility,
                                queries[..., 0].long())
    return [t.item() for t in terms.values()]


def batch(dataset, index: int = 0):
    video, tracks, visibility, k = dataset.sample(index, np.random.default_rng(index))
    return video[None], tracks[None, :, :k], visibility[None, :, :k]


def frozen_vit(root: Path) -> None:
    base = dict(vit_backbone="dinov3_s", backbone_config=dict(TINY_DINOV3), movi_f_root=str(root), T=8, N=16)
    totals = {}
    for switch in (False, True):
        args = tiny_config(frozen_vit_train_mode=switch, **base)
        torch.manual_seed(0)
        model = TrackOn2(ModelConfig.from_namespace(args)).train()
        data = MoviFLarge.from_config(args)
        totals[switch] = [sum(training_losses(model, args, *batch(data, i), seed=i)) for i in range(3)]
        frames = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            features = [model.backbone.vit_encoder.vit(pixel_values=frames).last_hidden_state for _ in range(2)]
        change = ((features[0] - features[1]).norm() / features[0].norm()).item()
        print(f"  frozen_vit_train_mode={switch}: total loss of 3 clips {np.round(totals[switch], 4).tolist()}, "
              f"ViT output change between two identical calls {change:.3%}")


def random_frames(root: Path) -> None:
    rng = np.random.default_rng(0)
    for switch in (True, False):
        gaps, backwards = [], []
        for _ in range(1000):
            idx = sample_frame_indices(120, 48, "random", 2.0, rng, sort_random=switch)
            gaps.append(np.abs(np.diff(idx)).mean())
            backwards.append((np.diff(idx) < 0).mean())
        args = tiny_config(movi_f_root=str(root), T=8, N=16, frame_sampling="random", frame_sample_ratio=2.0,
                           random_frames_sorted=switch)
        torch.manual_seed(0)
        model = TrackOn2(ModelConfig.from_namespace(args)).train()
        data = MoviFLarge.from_config(args)
        loss = [sum(training_losses(model, args, *batch(data, i), seed=i)) for i in range(3)]
        print(f"  random_frames_sorted={switch}: T=48 of 96 frames: mean |frame step| {np.mean(gaps):.2f}, "
              f"backward steps {np.mean(backwards):.1%}; tiny model total loss of 3 clips {np.round(loss, 4).tolist()}")


def empty_mask(root: Path) -> None:
    for mode in ("zero", "nan"):
        args = tiny_config(movi_f_root=str(root), T=8, N=16, empty_mask_loss=mode)
        torch.manual_seed(0)
        model = TrackOn2(ModelConfig.from_namespace(args)).train()
        video, tracks, visibility = batch(MoviFLarge.from_config(args))
        visibility = torch.zeros_like(visibility)
        visibility[:, 0] = True  # every point seen on its query frame only
        terms = training_losses(model, args, video, tracks, visibility)
        optimizer = build_optimizer(model, args)
        torch.manual_seed(0)
        queries = sample_queries(tracks, visibility)
        out = model(video, queries, p_mask=0.1)
        loss = sum(LossFunction.from_config(args)(out, scale_tracks(tracks, video, args.input_size), visibility,
                                       queries[..., 0].long()).values())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        bad = sum(int(not torch.isfinite(p).all()) for p in model.parameters() if p.requires_grad)
        trainable = sum(1 for p in model.parameters() if p.requires_grad)
        print(f"  empty_mask_loss={mode}: terms {dict(zip(LOSS_NAMES, np.round(terms, 4).tolist()))}; after one "
              f"AdamW step without amp, {bad}/{trainable} trainable tensors hold NaN")


def warmup() -> None:
    for iters, epochs in ((10, 5), (100, 3)):
        runs = {}
        for minimum in (1, 0):
            optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
            scheduler = build_scheduler(optimizer, iters, epochs, minimum)
            lrs = []
            for _ in range(iters * epochs):
                lrs.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                scheduler.step()
            runs[minimum] = np.array(lrs)
        difference = np.abs(runs[1] - runs[0]).max() / 5e-4
        print(f"  {iters * epochs} steps: min_warmup_steps=1 LRs {runs[1][:3].tolist()}..., =0 (reference) "
              f"{runs[0][:3].tolist()}...; largest difference {difference:.2%} of lr")


def logged_total(root: Path) -> None:
    args = tiny_config(movi_f_root=str(root), T=8, N=16)
    torch.manual_seed(0)
    model = TrackOn2(ModelConfig.from_namespace(args)).train()
    data = MoviFLarge.from_config(args)
    for i in range(3):
        terms = dict(zip(LOSS_NAMES, training_losses(model, args, *batch(data, i), seed=i)))
        print(f"  clip {i}: sum {logged_values(terms, 'sum')[1]:.4f}, reference formula "
              f"{logged_values(terms, 'reference')[1]:.4f} (L_p {terms['L_p']:.4f}, L_p2 {terms['L_p2']:.4f})")


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "movi_f"
        write_movi_f(root, 3, seed=0, num_frames=24, height=80, width=112, num_points=40)
        for title, measure in (("frozen ViT mode", lambda: frozen_vit(root)),
                               ("random frame order", lambda: random_frames(root)),
                               ("empty-mask losses", lambda: empty_mask(root)), ("warm-up", warmup),
                               ("logged total loss", lambda: logged_total(root))):
            print(title)
            measure()


if __name__ == "__main__":
    main()
