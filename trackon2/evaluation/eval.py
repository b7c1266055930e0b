"""Evaluate Track-On2 on TAP-Vid (DAVIS, Kinetics, RoboTAP), PointOdyssey, Dynamic Replica or EgoPoints.

    python -m evaluation.eval --model_config_path config/test.yaml --dataset_name davis \
        --dataset_path tapvid_davis.pkl --model_checkpoint_path trackon2.pth [--output_json out.json]
    python -m evaluation.eval --checkpoint track-on-r --dataset_name davis --dataset_path tapvid_davis.pkl
    python -m evaluation.eval ... --dataset_name davis --query_mode strided   # TAP-Vid "queried strided"
    python -m evaluation.eval --model_names trackon2-dinov3 track-on-r oracle random --dataset_name ego_points \
        --dataset_path ego_points/ [--cache_predictions] [--output_json out.json]

``--model_names`` scores several trackers and ensembles side by side (``evaluation.multi_run``).

Also runs under ``torchrun --nproc_per_node=K -m evaluation.eval ...``: videos are split across ranks by index
and the results are gathered and reported on rank 0. As the reference: inference memory M_i = 24 on DAVIS,
a 20x20 support grid, visibility threshold ``delta_v`` from the config, 'first' queries on TAP-Vid.
``--query_mode strided`` evaluates TAP-Vid in tapnet's other protocol: a query every 5 frames on each track's
visible frames, scored on every frame but the query frame, so the tracker also runs backward
(``Predictor(backward_tracking=True)``).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from trackon2.dataset.errors import DatasetFormatError
from trackon2.dataset.tapvid_queries import QUERY_MODES
from trackon2.evaluation.datasets import DATASETS, TAPVID_DATASETS, TAPVID_QUERY_MODE, benchmark
from trackon2.evaluation.device import parse_device
from trackon2.evaluation.errors import EvaluationStopped, SetupError
from trackon2.evaluation.evaluator import evaluate
from trackon2.evaluation.interrupts import EvaluationInterrupted, interrupted_message, stop_on_signals
from trackon2.evaluation.partial import (
    PartialResultsError,
    check_writable,
    remove_partials,
    resume_share,
    strict_stop,
)
from trackon2.evaluation.report import accumulate, skipped_lines, skipped_videos, summary, summary_lines, write_json
from trackon2.model.checkpoint import CheckpointError
from trackon2.model.registry import is_variant_name
from trackon2.model.yaml_schema import ConfigError, config_file
from trackon2.runtime.memory_size import inference_memory_size
from trackon2.runtime.predictor import SUPPORT_GRID_SIZE
from trackon2.utils.distributed import DistInfo, cleanup, fix_random_seeds, gather, init_distributed, shard
from trackon2.utils.model_options import (
    CHECKPOINT_HELP,
    DEFAULT_CONFIG,
    RANDOM_WEIGHTS,
    TINY_CONFIG,
    load_model_options,
)

SEED = 1234


@dataclass
class EvalConfig:
    """The evaluation run's settings, from the command line (the model's come from its config and checkpoint)."""

    model_config_path: str | None  # None: the configuration of the variant named by model_checkpoint_path
    model_checkpoint_path: str | None  # a checkpoint file or a registry variant name (its cached file once resolved)
    dataset_name: str
    dataset_path: str
    output_json: str | None
    device: torch.device
    max_videos: int | None
    num_workers: int
    no_progress: bool
    strict: bool
    query_mode: str  # the TAP-Vid protocol, 'first' or 'strided'
    model_names: list[str] | None = None  # several trackers (evaluation.trackers entries); None: the one checkpoint
    tracker_options: list[str] = field(default_factory=list)
    cache_predictions: bool = False
    cache_dir: str = "./cached_predictions"


def parse_args(argv: Sequence[str] | None = None) -> EvalConfig:
    parser = argparse.ArgumentParser(description="Evaluation script for Track-On2")
    parser.add_argument("--model_config_path", default=None,
                        help=f"model config YAML (default: the named variant's configuration, else {DEFAULT_CONFIG})")
    parser.add_argument("--dataset_name", required=True, choices=DATASETS, help="evaluation dataset")
    parser.add_argument(
        "--dataset_path", required=True,
        help="dataset file or folder (point_odyssey: the split folder, e.g. .../test, or the folder holding test/; "
        "dynamic_replica: the folder holding valid/)",
    )
    parser.add_argument("--checkpoint", "--model_checkpoint_path", dest="model_checkpoint_path", default=None,
                        help=f"{CHECKPOINT_HELP}, or 'none' for random weights (needs a config with backbone_config, "
                             f"such as {TINY_CONFIG}); with --model_names, the checkpoint of its trackon2 entry")
    parser.add_argument("--output_json", default=None, help="write every per-video and final number here")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--max_videos", type=int, default=None, help="evaluate only the first N videos")
    parser.add_argument("--num_workers", type=int, default=0, help="data-loading worker processes")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--query_mode", choices=QUERY_MODES, default=TAPVID_QUERY_MODE,
                        help="TAP-Vid protocol: 'first' (the reference's: each track queried at its first visible "
                             "frame) or 'strided' (a query every 5 frames where the track is visible, tracked in "
                             "both directions)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first video that cannot be evaluated (after saving the finished ones) "
                             "instead of skipping it")
    parser.add_argument("--model_names", nargs="+", default=None, metavar="[LABEL=]NAME",
                        help="trackers and ensembles to score side by side (see evaluation.trackers), e.g. "
                             "trackon2-dinov3 track-on-r oracle random; an ensemble chooses among those before it")
    parser.add_argument("--tracker_options", nargs="+", default=[], metavar="LABEL.KEY=VALUE",
                        help="an option of one listed tracker, e.g. a.checkpoint=a.pt random.seed=3")
    parser.add_argument("--cache_predictions", action="store_true",
                        help="store each tracker's predictions per video and reuse them (with --model_names)")
    parser.add_argument("--cache_dir", default="./cached_predictions", help="where --cache_predictions stores them")
    args = parser.parse_args(argv)
    if args.model_names is None and args.model_checkpoint_path is None:
        parser.error("give --checkpoint (one Track-On2 model) or --model_names (several trackers)")
    if args.cache_predictions and args.model_names is None:
        parser.error("--cache_predictions needs --model_names (e.g. --model_names trackon2 --checkpoint FILE)")
    if args.model_config_path is not None and not config_file(args.model_config_path).is_file():
        parser.error(f"--model_config_path: file not found: {args.model_config_path}")
    checkpoint = args.model_checkpoint_path
    if (checkpoint is not None and checkpoint != RANDOM_WEIGHTS and not is_variant_name(checkpoint)
            and not Path(checkpoint).is_file()):
        parser.error(f"--model_checkpoint_path: file not found: {checkpoint} (--checkpoint takes "
                     f"{CHECKPOINT_HELP}, or 'none' for random weights)")
    if not Path(args.dataset_path).exists():
        parser.error(f"--dataset_path: not found: {args.dataset_path}")
    if args.output_json is not None:
        try:
            check_writable(args.output_json)
        except PartialResultsError as exc:
            parser.error(str(exc))
    if args.query_mode != TAPVID_QUERY_MODE and args.dataset_name not in TAPVID_DATASETS:
        parser.error(f"--query_mode {args.query_mode} applies to the TAP-Vid datasets only "
                     f"({', '.join(TAPVID_DATASETS)}), not {args.dataset_name}")
    if args.max_videos is not None and args.max_videos < 1:
        parser.error("--max_videos must be at least 1")
    try:
        args.device = parse_device(args.device)
    except ValueError as exc:
        parser.error(f"--device: {exc}")
    return EvalConfig(**vars(args))


def rank_device(device: torch.device, ctx: DistInfo) -> torch.device:
    """``device``, with an unnumbered CUDA device pinned to this rank's GPU."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", ctx.local_rank)
    return device


def load_predictor(model_args: argparse.Namespace, checkpoint_path: str | None, device: torch.device,
                   allow_outside_queries: bool = False, backward_tracking: bool = False) -> torch.nn.Module:
    """The reference's evaluation Predictor (20x20 support grid, the model's own points on query frames) on
    ``device``.

    ``allow_outside_queries`` is for Dynamic Replica, whose query points may lie outside the frame;
    ``backward_tracking`` for the strided protocol, which scores frames before the query frame.
    """
    from trackon2.runtime.predictor import Predictor

    try:
        predictor = Predictor(model_args, checkpoint_path=checkpoint_path, support_grid_size=SUPPORT_GRID_SIZE,
                              allow_outside_queries=allow_outside_queries, backward_tracking=backward_tracking,
                              pin_query_points=False)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        raise SetupError(f"cannot build the predictor with checkpoint {checkpoint_path}: {exc}") from exc
    return predictor.to(device).eval()


def prepare(
    args: EvalConfig, device: torch.device
) -> tuple[argparse.Namespace, Dataset, torch.nn.Module]:
    """Config (with the DAVIS memory override), dataset and predictor; bad input raises SetupError."""
    try:
        model_args, checkpoint = load_model_options(args.model_checkpoint_path, args.model_config_path)
        if checkpoint is not None:
            args.model_checkpoint_path = str(checkpoint)  # a variant name becomes its file in the hub cache
        rules = benchmark(args.dataset_name, _query_mode(args))
        model_args.M_i = inference_memory_size(model_args.M_i, benchmark=args.dataset_name)
        dataset = rules.build(args.dataset_path)
    except (ConfigError, CheckpointError, DatasetFormatError, FileNotFoundError) as exc:
        raise SetupError(str(exc)) from exc
    if len(dataset) == 0:
        raise SetupError(f"no video found in {args.dataset_path}")
    weights = None if args.model_checkpoint_path == RANDOM_WEIGHTS else args.model_checkpoint_path
    return model_args, dataset, load_predictor(model_args, weights, device, rules.allow_outside_queries,
                                               rules.query_mode == "strided")


def _query_mode(args: EvalConfig) -> str | None:
    """The TAP-Vid protocol of the run; None on the other benchmarks."""
    return args.query_mode if args.dataset_name in TAPVID_DATASETS else None


def run_info(args: EvalConfig, model_args: argparse.Namespace, world_size: int) -> dict[str, object]:
    """Run settings stored next to the numbers in the JSON output."""
    return {
        "model_config_path": args.model_config_path,
        "model_checkpoint_path": args.model_checkpoint_path,
        "M_i": model_args.M_i,
        "delta_v": model_args.delta_v,
        "support_grid_size": SUPPORT_GRID_SIZE,
        "query_mode": _query_mode(args),
        "backward_tracking": _query_mode(args) == "strided",
        "world_size": world_size,
    }


def resume_settings(args: EvalConfig, model_args: argparse.Namespace) -> dict[str, object]:
    """What must be unchanged for a rerun to reuse earlier per-video results (paths, weights file, settings)."""
    if args.model_checkpoint_path == RANDOM_WEIGHTS:  # seeded random weights: the same on every run
        checkpoint, size, mtime = RANDOM_WEIGHTS, None, None
    else:
        path = Path(args.model_checkpoint_path).resolve()
        checkpoint, size, mtime = str(path), path.stat().st_size, path.stat().st_mtime_ns
    return {
        "dataset_name": args.dataset_name,
        "dataset_path": str(Path(args.dataset_path).resolve()),
        "model_config_path": str(Path(args.model_config_path).resolve()) if args.model_config_path else None,
        "model_checkpoint_path": checkpoint,
        "checkpoint_size": size,
        "checkpoint_mtime_ns": mtime,
        "M_i": model_args.M_i,
        "delta_v": model_args.delta_v,
        "support_grid_size": SUPPORT_GRID_SIZE,
        "query_mode": _query_mode(args),
    }


def evaluate_shard(args: EvalConfig, model_args: argparse.Namespace, dataset: Dataset,
                   predictor: torch.nn.Module, device: torch.device, num_videos: int,
                   ctx: DistInfo) -> list:
    """This rank's results: those saved by an earlier run of the same evaluation, then the newly evaluated ones
    (each saved to the partial file as soon as it is done)."""
    mine = shard(num_videos, ctx)
    settings = resume_settings(args, model_args) if args.output_json else {}
    reused, todo, writer = resume_share(args.output_json, settings, mine, ctx.rank)
    try:
        fresh = evaluate(
            predictor,
            dataset,
            args.dataset_name,
            todo,
            device,
            num_workers=args.num_workers,
            show_progress=not args.no_progress and ctx.is_main,  # one bar (rank 0's share), not one per rank
            strict=args.strict,
            on_result=writer,
            query_mode=_query_mode(args),
        )
    finally:
        if writer is not None:
            writer.close()
    return reused + fresh


def report(args: EvalConfig, model_args: argparse.Namespace, results: list, num_videos: int,
           world_size: int) -> None:
    """Print the final numbers and the skipped videos, write the JSON; raise EvaluationStopped under --strict."""
    skipped = skipped_videos(results)
    if args.strict and skipped:
        raise strict_stop(skipped[0], len(results) - len(skipped), args.output_json)
    accumulator = accumulate(results)
    lines = skipped_lines(skipped, num_videos)
    if len(accumulator):
        table = summary(args.dataset_name, accumulator.results(), len(accumulator), len(skipped))
        mode = _query_mode(args)
        lines = ([f"Protocol: queried {mode}"] if mode else []) + summary_lines(args.dataset_name, table) + lines
    print("\n" + "\n".join(lines), flush=True)
    if args.output_json:
        write_json(args.output_json, args.dataset_name, accumulator, run_info(args, model_args, world_size),
                   skipped)
        remove_partials(args.output_json)
        print(f"Wrote {args.output_json}", flush=True)
    if not len(accumulator):
        raise EvaluationStopped(f"none of the {num_videos} video(s) could be evaluated (reasons above)")


def _protocol(args: EvalConfig) -> str:
    mode = _query_mode(args)
    return f" (queried {mode})" if mode else ""


def run(args: EvalConfig) -> int:
    """Evaluate (this rank's share of) the dataset; rank 0 prints the final numbers and writes the JSON."""
    if args.model_names is not None:
        from trackon2.evaluation.multi_run import run_lineup

        return run_lineup(args)
    ctx = init_distributed("cuda" if args.device.type == "cuda" else "cpu")
    try:
        device = rank_device(args.device, ctx)
        fix_random_seeds(SEED)
        model_args, dataset, predictor = prepare(args, device)
        num_videos = len(dataset) if args.max_videos is None else min(len(dataset), args.max_videos)
        if ctx.is_main:
            print(
                f"Evaluating on {args.dataset_name}{_protocol(args)}: {num_videos} videos, M_i={model_args.M_i}, "
                f"delta_v={model_args.delta_v}, device={device}, processes={ctx.world_size}",
                flush=True,
            )
        results = evaluate_shard(args, model_args, dataset, predictor, device, num_videos, ctx)
        results = gather(results, ctx)
        if ctx.is_main:
            report(args, model_args, results, num_videos, ctx.world_size)
    finally:
        cleanup(ctx)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with stop_on_signals():
            return run(args)
    except EvaluationInterrupted as stop:
        print(f"\n{interrupted_message(str(stop), args.output_json)}", file=sys.stderr, flush=True)
        return stop.exit_code
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except EvaluationStopped as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
