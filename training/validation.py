"""Per-epoch evaluation on TAP-Vid (DAVIS by default) with the weights being trained, through ``evaluation/``.

An inference ``Predictor`` is built once; before each evaluation it receives a copy of the training weights with the
temporal embedding resampled to the evaluation memory size (M_i = 24 on DAVIS, as the reference's evaluation;
the training memory size M on the other TAP-Vid sets, as the reference's training-time evaluation).
"""

from __future__ import annotations

import argparse
import types

import torch
from torch.utils.data import Dataset

from evaluation.datasets import TAPVID_DATASETS, benchmark, build_dataset
from evaluation.evaluator import evaluate
from evaluation.report import accumulate
from model.trackon import TrackOn2
from model.trackon_predictor import SUPPORT_GRID_SIZE, Predictor
from utils.config import config_from_mapping


def evaluation_config(args: argparse.Namespace) -> argparse.Namespace:
    """The training config with the evaluation memory size."""
    memory = benchmark(args.eval_dataset).memory_size
    memory = args.M if memory is None else memory
    return config_from_mapping({**vars(args), "M_i": memory})


def load_eval_dataset(args: argparse.Namespace) -> Dataset:
    """The TAP-Vid evaluation set named by ``eval_dataset`` at ``tapvid_root``."""
    if args.eval_dataset not in TAPVID_DATASETS:
        raise ValueError(f"eval_dataset {args.eval_dataset!r} cannot be evaluated during training; "
                         f"expected one of {list(TAPVID_DATASETS)}")
    if args.tapvid_root is None:
        raise ValueError("tapvid_root is not set (give --tapvid_root)")
    dataset = build_dataset(args.eval_dataset, args.tapvid_root)
    if len(dataset) == 0:
        raise ValueError(f"no video found in {args.tapvid_root}")
    return dataset


class TrainingEvaluator:
    """Scores the training model's current weights: ``scores = evaluator(model)`` -> {aj, oa, delta_avg, ...}.

    Videos that cannot be evaluated are named and skipped; if none can be, the scores are NaN (never "best")."""

    def __init__(self, args: argparse.Namespace, dataset: Dataset, device: torch.device) -> None:
        self.args = evaluation_config(args)
        self.dataset = dataset
        self.device = device
        self.predictor = Predictor(self.args, checkpoint_path=None, support_grid_size=SUPPORT_GRID_SIZE,
                                   pin_query_points=False).to(device).eval()

    def _load_weights(self, model: torch.nn.Module) -> None:
        state = {name: value.detach() for name, value in model.state_dict().items()}
        if self.args.M_i != model.M:
            # Resample the temporal embedding with the model's own inference-time memory extension.
            holder = types.SimpleNamespace(t_embedding=state["t_embedding"].clone(), M=model.M)
            TrackOn2.memory_extension(holder, self.args.M_i)
            state["t_embedding"] = holder.t_embedding.detach()
        self.predictor.model.load_state_dict(state, strict=True)

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, show_progress: bool = True) -> dict[str, float]:
        self._load_weights(model)
        self.predictor.eval()
        results = evaluate(self.predictor, self.dataset, self.args.eval_dataset, range(len(self.dataset)),
                           self.device, print_each=False,
                           show_progress=show_progress)
        accumulator = accumulate(results)
        if not len(accumulator):  # no usable video: the epoch's training is still saved, with unknown scores
            print(f"warning: none of the {len(results)} evaluation video(s) could be evaluated", flush=True)
            return {"aj": float("nan"), "oa": float("nan"), "delta_avg": float("nan")}
        return accumulator.results()
