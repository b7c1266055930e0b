"""``python -m evaluation.eval --model_names A B ...``: several trackers and ensembles on one benchmark, with the
single-tracker run's skip, resume (``--output_json``) and torchrun-sharding rules, and optionally cached
predictions (``--cache_predictions``, ``--cache_dir``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trackon2.dataset.errors import DatasetFormatError
from trackon2.evaluation.datasets import benchmark, build_dataset
from trackon2.evaluation.errors import EvaluationStopped, SetupError
from trackon2.evaluation.eval import SEED, EvalConfig, rank_device
from trackon2.evaluation.lineup import TrackerSpec, build_lineup, lineup_settings, parse_lineup
from trackon2.evaluation.multi import evaluate_lineup
from trackon2.evaluation.multi_report import accumulate_by_label, final_table, write_lineup_json
from trackon2.evaluation.partial import (
    remove_partials,
    resume_share,
    strict_stop,
)
from trackon2.evaluation.prediction_cache import PredictionCache
from trackon2.evaluation.report import skipped_lines, skipped_videos
from trackon2.evaluation.trackers import TrackerRegistryError
from trackon2.model.checkpoint import CheckpointError
from trackon2.model.yaml_schema import ConfigError
from trackon2.utils.distributed import DistInfo, cleanup, fix_random_seeds, gather, init_distributed, shard


def lineup_specs(args: EvalConfig) -> list[TrackerSpec]:
    """The listed trackers, checked (names, options, files) before any work; bad ones raise SetupError."""
    try:
        return parse_lineup(args.model_names, args.tracker_options, args.model_checkpoint_path,
                            args.model_config_path)
    except TrackerRegistryError as exc:
        raise SetupError(str(exc)) from exc


def _dataset_settings(args: EvalConfig) -> dict[str, Any]:
    return {"dataset_name": args.dataset_name, "dataset_path": str(Path(args.dataset_path).resolve())}


def _report(args: EvalConfig, labels: list[str], results: list, num_videos: int, extra: dict[str, Any]) -> None:
    skipped = skipped_videos(results)
    if args.strict and skipped:
        raise strict_stop(skipped[0], len(results) - len(skipped), args.output_json)
    accumulators = accumulate_by_label(results, labels)
    evaluated = len(next(iter(accumulators.values())))
    lines = skipped_lines(skipped, num_videos)
    if evaluated:
        final = {label: acc.results() for label, acc in accumulators.items()}
        lines = [f"Final ({args.dataset_name}, {evaluated} video(s)):", *final_table(final, labels), *lines]
    print("\n" + "\n".join(lines), flush=True)
    if args.output_json:
        write_lineup_json(args.output_json, args.dataset_name, results, labels, extra, skipped)
        remove_partials(args.output_json)
        print(f"Wrote {args.output_json}", flush=True)
    if not evaluated:
        raise EvaluationStopped(f"none of the {num_videos} video(s) could be evaluated (reasons above)")


def _evaluate_shard(args: EvalConfig, specs: list[TrackerSpec], built: dict[str, Any], dataset, settings: dict,
                    device: torch.device, num_videos: int, ctx: DistInfo) -> list:
    mine = shard(num_videos, ctx)
    reused, todo, writer = resume_share(args.output_json, settings, mine, ctx.rank)
    cache = PredictionCache(args.cache_dir, _dataset_settings(args)) if args.cache_predictions else None
    try:
        fresh = evaluate_lineup(specs, built, dataset, args.dataset_name, todo, device, cache=cache,
                                num_workers=args.num_workers, show_progress=not args.no_progress and ctx.is_main,
                                strict=args.strict, on_result=writer)
    finally:
        if writer is not None:
            writer.close()
    return reused + fresh


def run_lineup(args: EvalConfig) -> int:
    """Evaluate (this rank's share of) the dataset with every listed tracker; rank 0 prints the table and writes
    the JSON."""
    specs = lineup_specs(args)
    ctx = init_distributed("cuda" if args.device.type == "cuda" else "cpu")
    try:
        device = rank_device(args.device, ctx)
        fix_random_seeds(SEED)
        rules = benchmark(args.dataset_name)
        try:
            dataset = build_dataset(args.dataset_name, args.dataset_path)
            built = build_lineup(specs, {"device": device, "benchmark": args.dataset_name,
                                         "allow_outside_queries": rules.allow_outside_queries})
        except (ConfigError, CheckpointError, DatasetFormatError, TrackerRegistryError, FileNotFoundError) as exc:
            raise SetupError(str(exc)) from exc
        if len(dataset) == 0:
            raise SetupError(f"no video found in {args.dataset_path}")
        num_videos = len(dataset) if args.max_videos is None else min(len(dataset), args.max_videos)
        trackers = lineup_settings(specs, built)
        settings = {**_dataset_settings(args), "trackers": trackers}
        labels = [spec.label for spec in specs]
        if ctx.is_main:
            print(f"Evaluating {', '.join(labels)} on {args.dataset_name}: {num_videos} videos, device={device}, "
                  f"processes={ctx.world_size}", flush=True)
        results = gather(_evaluate_shard(args, specs, built, dataset, settings, device, num_videos, ctx), ctx)
        if ctx.is_main:
            _report(args, labels, results, num_videos,
                    {"trackers": trackers, "query_mode": rules.query_mode, "world_size": ctx.world_size})
    finally:
        cleanup(ctx)
    return 0
