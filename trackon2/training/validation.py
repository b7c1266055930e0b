"""Per-epoch evaluation on TAP-Vid (DAVIS by default) or EgoPoints with the weights being trained, through
``evaluation/``. On EgoPoints the trainer's delta_avg and oa are its delta_avg and OA; it has no AJ (NaN, so no
best-AJ checkpoint).

An inference ``Predictor`` is built once, with the evaluation memory size that ``runtime.memory_size`` decides for
training-time evaluation (M_i = 24 on DAVIS, the training memory size M on the other TAP-Vid sets, as the
reference); before each evaluation it receives a copy of the training weights.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from trackon2.evaluation.datasets import TAPVID_DATASETS, benchmark, build_dataset
from trackon2.evaluation.evaluator import evaluate
from trackon2.evaluation.report import accumulate
from trackon2.model.config import ModelConfig
from trackon2.runtime.memory_size import inference_memory_size
from trackon2.runtime.predictor import SUPPORT_GRID_SIZE, Predictor
from trackon2.training.config import DataConfig, RunConfig

PER_EPOCH_DATASETS = (*TAPVID_DATASETS, "ego_points")
# The trainer's score names -> EgoPoints' metric keys.
EGO_POINTS_SCORES = {"delta_avg": "old_d_all_avg", "oa": "vis_acc"}


def evaluation_config(run: RunConfig) -> ModelConfig:
    """The model configuration with the memory size of training-time evaluation."""
    memory = inference_memory_size(run.model.M_i, benchmark=run.data.eval_dataset, training_memory_size=run.model.M)
    return run.model.replace(M_i=memory)


def load_eval_dataset(data: DataConfig) -> Dataset:
    """The evaluation set named by ``eval_dataset`` at ``tapvid_root`` (a TAP-Vid file or an EgoPoints folder)."""
    if data.eval_dataset not in PER_EPOCH_DATASETS:
        raise ValueError(f"eval_dataset {data.eval_dataset!r} cannot be evaluated during training; "
                         f"expected one of {list(PER_EPOCH_DATASETS)}")
    if data.tapvid_root is None:
        raise ValueError("tapvid_root is not set (give --tapvid_root)")
    dataset = build_dataset(data.eval_dataset, data.tapvid_root)
    if len(dataset) == 0:
        raise ValueError(f"no video found in {data.tapvid_root}")
    return dataset


class TrainingEvaluator:
    """Scores the training model's current weights: ``scores = evaluator(model)`` -> {aj, oa, delta_avg, ...}.

    Videos that cannot be evaluated are named and skipped; if none can be, the scores are NaN (never "best")."""

    def __init__(self, run: RunConfig, dataset: Dataset, device: torch.device) -> None:
        self.dataset_name = run.data.eval_dataset
        self.dataset = dataset
        self.device = device
        self.predictor = Predictor(evaluation_config(run), support_grid_size=SUPPORT_GRID_SIZE,
                                   allow_outside_queries=benchmark(run.data.eval_dataset).allow_outside_queries,
                                   pin_query_points=False)
        self.predictor = self.predictor.to(device).eval()

    def _load_weights(self, model: torch.nn.Module) -> None:
        state = {name: value.detach() for name, value in model.state_dict().items()}
        self.predictor.model.load_state_dict(state, strict=True)

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, show_progress: bool = True) -> dict[str, float]:
        self._load_weights(model)
        self.predictor.eval()
        results = evaluate(self.predictor, self.dataset, self.dataset_name, range(len(self.dataset)),
                           self.device, print_each=False,
                           show_progress=show_progress)
        accumulator = accumulate(results)
        if not len(accumulator):  # no usable video: the epoch's training is still saved, with unknown scores
            print(f"warning: none of the {len(results)} evaluation video(s) could be evaluated", flush=True)
            return {"aj": float("nan"), "oa": float("nan"), "delta_avg": float("nan")}
        scores = accumulator.results()
        if self.dataset_name == "ego_points":
            scores.update({"aj": float("nan"), **{name: scores[key] for name, key in EGO_POINTS_SCORES.items()}})
        return scores
