"""The training job: data, model, optimiser, per-iteration steps, per-epoch evaluation and checkpoints.

Recipe (the reference's): AdamW (lr, wd from the config) over the trainable parameters (the ViT is frozen), 1% linear
warm-up then cosine decay per iteration, gradient-norm clipping at 1.0, fp16 autocast with a GradScaler on CUDA when
``amp``, random memory masking p_mask = 0.1, queries from the ground truth (training.queries). After each epoch rank
0 evaluates on TAP-Vid and writes ``checkpoint.pt`` and the best checkpoints by AJ, OA and delta_avg.

Nothing is lost to an interruption: ``checkpoint.pt`` is also written every ``save_every`` iterations and on
SIGINT/SIGTERM, and a resumed run continues mid-epoch with the batches and random draws of an uninterrupted run
(``training.data_stream``, ``seed_iteration``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from trackon2.dataset.movi_f import MoviFLarge
from trackon2.model.loss import LossFunction
from trackon2.model.trackon import TrackOn2
from trackon2.runtime.fast import set_fast
from trackon2.training import checkpointing
from trackon2.training.config import DataConfig, RunConfig, TrainingConfig
from trackon2.training.data_stream import EpochSampler, LoadFailure, derived_seed, die_with_parent, make_epoch_loader
from trackon2.training.grad_layout import match_grad_strides
from trackon2.training.interrupts import StopRequests, TrainingInterrupted
from trackon2.training.logging import TrainingLogger
from trackon2.training.queries import sample_queries
from trackon2.training.resume_check import changed_settings
from trackon2.training.schedule import build_scheduler
from trackon2.utils.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    cleanup,
    fix_random_seeds,
    init_distributed,
    silence_non_main,
)

P_MASK = 0.1
CLIP_NORM = 1.0


@dataclass
class StepResult:
    loss: float
    terms: dict[str, float]
    lr: float
    seconds: float


@dataclass
class TrainState:
    """Everything one optimisation step needs."""

    model: nn.Module  # possibly DDP-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    loss_fn: nn.Module
    device: torch.device
    amp: bool
    iteration: int = 0
    p_mask: float = P_MASK


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def build_optimizer(model: nn.Module, settings: TrainingConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only (the frozen ViT is left out)."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr,
                             weight_decay=settings.wd)


def prepare_batch(batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(video, tracks, visibility) on ``device``, with the track padding cut to the batch's smallest
    ``got_k_points`` (as the reference)."""
    video, tracks, visibility, k_points = batch
    k_points = torch.as_tensor(k_points)
    min_k = int(k_points.min())
    video = video.to(device, non_blocking=True)
    tracks = tracks[:, :, :min_k].to(device, non_blocking=True)
    visibility = visibility[:, :, :min_k].to(device, non_blocking=True)
    return video, tracks, visibility


def scale_tracks(tracks: torch.Tensor, video: torch.Tensor, input_size: list[int]) -> torch.Tensor:
    """Ground truth in model-input pixels (a no-op when the crop already is ``input_size``, as for MOVi-F)."""
    height_in, width_in = video.shape[-2:]
    height, width = input_size
    scale = torch.tensor([width / width_in, height / height_in], dtype=tracks.dtype, device=tracks.device)
    return tracks * scale


def train_step(state: TrainState, video: torch.Tensor, tracks: torch.Tensor, visibility: torch.Tensor,
               input_size: list[int]) -> StepResult:
    """One optimisation step on a batch: forward, the seven losses, backward, clip, step, scheduler step."""
    start = time.perf_counter()
    model = state.model
    model.train()
    gt_tracks = scale_tracks(tracks, video, input_size)
    queries = sample_queries(tracks, visibility)  # (B, N, 3) in video pixels
    query_times = queries[..., 0].long()
    with torch.autocast(device_type=state.device.type, dtype=torch.float16, enabled=state.amp):
        out = model(video, queries, p_mask=state.p_mask)
        terms = state.loss_fn(out, gt_tracks, visibility, query_times)
    loss = sum(terms.values())
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        state.optimizer.step()
    lr = state.optimizer.param_groups[0]["lr"]
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.iteration += 1
    values = torch.stack([t.detach().float() for t in terms.values()]).cpu().tolist()  # one device sync per step
    if state.device.type == "cuda":
        torch.cuda.synchronize(state.device)
    return StepResult(sum(values), dict(zip(terms, values)), lr, time.perf_counter() - start)


@dataclass
class EpochContext:
    """What the iterations of an epoch need besides the optimisation state."""

    args: argparse.Namespace
    info: DistInfo
    logger: TrainingLogger
    stop: StopRequests
    save: Callable[[int, int], None]  # save(epoch, epoch_iteration): a checkpoint within the epoch (rank 0)


def seed_iteration(seed: int, rank: int, iteration: int) -> None:
    """Seed Python, numpy and torch for one training step, so a resumed run draws what an uninterrupted one does."""
    value = derived_seed(seed, rank, iteration)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def interrupted_message(epoch: int, epoch_iteration: int, iters: int) -> str:
    return f"interrupted at epoch {epoch} iteration {epoch_iteration}/{iters}; rerun the same command to resume"


def train_one_epoch(state: TrainState, loader: DataLoader, epoch: int, start: int, iters: int,
                    ctx: EpochContext) -> tuple[float, float]:
    """Run iterations ``start`` .. ``iters - 1`` of ``epoch``; returns the mean total loss and the mean seconds per
    iteration of this rank. Saves every ``save_every`` iterations; on SIGINT/SIGTERM saves and raises
    ``TrainingInterrupted``."""
    args, info = ctx.args, ctx.info
    bar = tqdm(loader, total=iters, initial=start, disable=not info.is_main, file=sys.stdout,
               desc=f"epoch {epoch}", dynamic_ncols=True)
    total = seconds = 0.0
    done = start
    for batch in bar:
        if isinstance(batch, LoadFailure):
            batch.raise_error()
        seed_iteration(args.seed, info.rank, state.iteration)
        video, tracks, visibility = prepare_batch(batch, state.device)
        step = train_step(state, video, tracks, visibility, args.input_size)
        ctx.logger.log_iteration(state.iteration - 1, epoch, step.terms, step.lr, step.seconds)
        bar.set_description(f"epoch {epoch} | loss {step.loss:.5f}")
        bar.set_postfix(lr=f"{step.lr:.2e}", s_per_it=f"{step.seconds:.2f}")
        total += step.loss
        seconds += step.seconds
        done += 1
        signal_number = ctx.stop.agreed(state.device, info.distributed)
        if signal_number or (args.save_every and state.iteration % args.save_every == 0 and done < iters):
            ctx.save(epoch, done)
        if signal_number:
            bar.close()
            raise TrainingInterrupted(interrupted_message(epoch, done, iters), signal_number)
    bar.close()
    count = max(done - start, 1)
    return total / count, seconds / count


def build_train_data(args: argparse.Namespace, info: DistInfo) -> tuple[DataLoader, EpochSampler]:
    """The training DataLoader and its resumable sampler (set its position before each epoch)."""
    dataset = MoviFLarge.from_config(args)
    sampler = EpochSampler(len(dataset), args.bs, args.seed, info.rank, info.world_size)
    if sampler.batches_per_pass == 0:
        raise ValueError(f"{args.movi_f_root}: fewer samples ({len(dataset)}) than processes x batch size "
                         f"({info.world_size} x {args.bs})")
    loader = make_epoch_loader(dataset, sampler, args.num_workers, pin_memory=info.device.type == "cuda")
    return loader, sampler


def run(args: argparse.Namespace, max_epochs_per_run: int | None = None, device: str | None = None) -> dict:
    """The whole training job (every rank calls it). Returns a summary (best scores, last epoch and iteration).

    Raises ``TrainingInterrupted`` (after saving) on SIGINT/SIGTERM."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        die_with_parent(signal.SIGTERM)  # torchrun's agent died: save and stop rather than run on orphaned
    info = init_distributed(device)
    restore_print = silence_non_main(info)
    try:
        with StopRequests() as stop:
            return _run(args, info, max_epochs_per_run, stop)
    finally:
        restore_print()
        cleanup(info)


def load_eval_set(data: DataConfig, info: DistInfo) -> Dataset | None:
    """The evaluation set on rank 0 (None elsewhere); every rank stops if it is unusable (rather than wait forever)."""
    eval_dataset, eval_error = None, None
    if info.is_main:
        from trackon2.training.validation import load_eval_dataset

        try:
            eval_dataset = load_eval_dataset(data)
        except (ValueError, OSError) as err:  # DatasetFormatError is a ValueError
            eval_error = err
    message = broadcast_object(None if eval_error is None else str(eval_error), info)
    if eval_error is not None:
        raise eval_error
    if message is not None:
        raise ValueError(f"rank 0 could not load the evaluation set: {message}")
    return eval_dataset


def resume_run(args: argparse.Namespace, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
               scaler) -> dict:
    """Restore the checkpoint to resume from, if any, and warn about config values that differ from its own."""
    resume = checkpointing.resume_path(args.checkpoint_path, args.model_save_path)
    if resume is None:
        return {"epoch": 0, "iteration": 0, "epoch_iteration": 0, "best": checkpointing.initial_best(), "args": None}
    run_vars = checkpointing.restore(resume, model, optimizer, scheduler, scaler)
    print(f"Resumed from {resume}: epoch {run_vars['epoch']}, iteration {run_vars['iteration']}"
          + (f" ({run_vars['epoch_iteration']} into the epoch)" if run_vars["epoch_iteration"] else ""))
    for line in changed_settings(run_vars["args"], args):
        print(line, file=sys.stderr, flush=True)
    run_vars["source"] = resume
    return run_vars


def _run(args: argparse.Namespace, info: DistInfo, max_epochs_per_run: int | None, stop: StopRequests) -> dict:
    run_config = RunConfig.from_namespace(args)
    settings = run_config.training
    fix_random_seeds(settings.seed + info.rank)
    start_time = time.time()
    save_dir = Path(settings.model_save_path)
    if info.is_main:
        save_dir.mkdir(parents=True, exist_ok=True)
        for path in checkpointing.remove_stale_temporaries(save_dir):
            print(f"Removed {path}, left by a run killed while saving")
    print(f"World size: {info.world_size}, device: {info.device}")

    # === Data ===
    loader, sampler = build_train_data(args, info)
    iters = settings.iters_per_epoch if settings.iters_per_epoch is not None else sampler.batches_per_pass
    print(f"Total number of iterations: {iters * settings.epoch_num / 1000:.3f}K ({iters} per epoch)")
    eval_dataset = load_eval_set(run_config.data, info)

    # === Model & optimisation ===
    model = TrackOn2(run_config.model, vit_train_mode=settings.frozen_vit_train_mode)
    model = set_fast(model).to(info.device)  # mmcv's kernel / the CPU gather; the rest falls back under training
    optimizer = build_optimizer(model, settings)
    scheduler = build_scheduler(optimizer, iters, settings.epoch_num, settings.min_warmup_steps)
    amp = settings.amp and info.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None
    total, trainable = count_parameters(model)
    print(f"Number of parameters: {total / 10**6:.2f}M")
    print(f"Number of learnable parameters: {trainable / 10**6:.2f}M")

    run_vars = resume_run(args, model, optimizer, scheduler, scaler)
    best = run_vars["best"]
    first_epoch, start = run_vars["epoch"], min(run_vars["epoch_iteration"], iters)
    if first_epoch >= settings.epoch_num:
        print(f"Nothing to train: {run_vars['source']} already finished epoch_num={settings.epoch_num} epoch(s) "
              f"(give a larger --epoch_num to train longer)", file=sys.stderr, flush=True)
        return {"best": best, "iteration": run_vars["iteration"], "scores": {}}

    if info.distributed:
        match_grad_strides(model)
        ddp_kwargs = {"device_ids": [info.device.index]} if info.device.type == "cuda" else {}
        model_for_training = DistributedDataParallel(model, find_unused_parameters=False, **ddp_kwargs)
    else:
        model_for_training = model
    loss = LossFunction(run_config.model.input_size, settings.lambda_patch_cls, settings.empty_mask_loss)
    state = TrainState(model_for_training, optimizer, scheduler, scaler, loss, info.device, amp,
                       iteration=run_vars["iteration"])
    evaluator = None
    if info.is_main:
        from trackon2.training.validation import TrainingEvaluator

        evaluator = TrainingEvaluator(run_config, eval_dataset, info.device)
    logger = TrainingLogger(settings, info.rank, resume_iteration=state.iteration, resume_epoch=first_epoch)

    def save_within_epoch(epoch: int, epoch_iteration: int) -> None:
        if info.is_main:
            ckpt = checkpointing.make_checkpoint(model, optimizer, scheduler, scaler, epoch, state.iteration, best,
                                                 args, epoch_iteration=epoch_iteration)
            checkpointing.save_checkpoints(ckpt, save_dir, {})
            logger.flush()
        barrier(info)

    ctx = EpochContext(args, info, logger, stop, save_within_epoch)

    # === Epochs ===
    print("Training starts")
    epochs_run = 0
    last_scores: dict[str, float] = {}
    try:
        for epoch in range(first_epoch, settings.epoch_num):
            if max_epochs_per_run is not None and epochs_run >= max_epochs_per_run:
                print(f"Stopping after {epochs_run} epoch(s) in this run (resume with the same command)")
                break
            print(f"=== === Epoch {epoch} === ===")
            sampler.set_position(epoch, start, iters)
            mean_loss, seconds = train_one_epoch(state, loader, epoch, start, iters, ctx)
            start = 0
            print(f"Epoch {epoch}: mean loss {mean_loss:.5f}, {seconds:.3f} s/iteration, iteration {state.iteration}")

            if info.is_main:
                last_scores = evaluator(model)
                print(f"Evaluation ({run_config.data.eval_dataset}) epoch {epoch}: AJ {last_scores['aj']:.2f}, "
                      f"OA {last_scores['oa']:.2f}, delta_avg {last_scores['delta_avg']:.2f}")
                logger.log_evaluation(epoch, {k: last_scores[k] for k in ("aj", "oa", "delta_avg")})
                improved = checkpointing.update_best(best, last_scores, epoch)
                ckpt = checkpointing.make_checkpoint(model, optimizer, scheduler, scaler, epoch + 1, state.iteration,
                                                     best, args)
                checkpointing.save_checkpoints(ckpt, save_dir, improved)
                logger.flush()
            barrier(info)
            epochs_run += 1
            signal_number = stop.agreed(info.device, info.distributed)
            if signal_number:
                raise TrainingInterrupted(interrupted_message(epoch + 1, 0, iters), signal_number)
            print()
    finally:
        logger.close()

    if info.is_main:
        print("Best Results")
        print(f"Best AJ: {best['aj'][1]:.3f} at epoch {best['aj'][0]}")
        print(f"Best OA: {best['oa'][1]:.3f} at epoch {best['oa'][0]}")
        print(f"Best Smaller Delta Avg: {best['delta_avg'][1]:.3f} at epoch {best['delta_avg'][0]}")
    print(f"Training time {datetime.timedelta(seconds=int(time.time() - start_time))}")
    return {"best": best, "iteration": state.iteration, "scores": last_scores}
