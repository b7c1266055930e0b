"""Per-iteration training logs (rank 0 only): each loss term, the total, the learning rate and the step time.

Backends (config key ``log_backend``): ``tensorboard`` (``<model_save_path>/tensorboard``), ``csv``
(``<model_save_path>/train_log.csv``), ``wandb`` (imported only when chosen; project "Track-On2", run named after
the save folder, as the reference) or ``none``. Tags follow the reference's wandb names.

A resumed run first drops what was logged after its checkpoint (CSV rows, TensorBoard events at later steps), so an
iteration is never logged twice.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from trackon2.model.loss import LOSS_NAMES
from trackon2.model.yaml_schema import ConfigError
from trackon2.training.config import TrainingConfig

LOSS_TAGS = {
    "L_p": "Training/point_loss",
    "L_p2": "Training/point_rerank_loss",
    "L_vis": "Training/visibility_loss",
    "L_o": "Training/offset_loss",
    "L_u": "Training/uncertainty_loss",
    "L_topk_u": "Training/topk_uncertainty_loss",
    "L_topk_rank": "Training/topk_rank_loss",
}
TOTAL_TAG = "Training/batch_loss"
LR_TAG = "Training/lr"
TIME_TAG = "Training/iteration_time"
CSV_NAME = "train_log.csv"
EVAL_CSV_NAME = "eval_log.csv"
TENSORBOARD_DIR = "tensorboard"


def keep_rows(path: Path, keep: Callable[[list[str]], bool]) -> None:
    """Rewrite the CSV file ``path`` (if any) with its header and the data rows for which ``keep`` is true."""
    if not path.is_file():
        return
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    kept = rows[:1] + [row for row in rows[1:] if row and keep(row)]
    if len(kept) == len(rows):
        return
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", newline="") as stream:
        csv.writer(stream).writerows(kept)
    os.replace(temporary, path)


def _before(limit: int) -> Callable[[list[str]], bool]:
    def keep(row: list[str]) -> bool:
        try:
            return int(row[0]) < limit
        except ValueError:
            return False
    return keep


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        warnings.warn(f"Loss {name} is {value}. Check your data and model.")
    return value


def logged_values(losses: Mapping[str, float], style: str) -> tuple[dict[str, float], float]:
    """The loss terms and the total to log. ``sum``: the terms as they are and their sum (the objective).
    ``reference``: as the reference's wandb log, NaN terms as 0 and the total L_p + L_p + L_vis + L_o + L_u +
    L_topk_u + L_topk_rank (L_p counted twice, L_p2 left out)."""
    values = {name: _finite(name, float(losses[name])) for name in LOSS_NAMES}
    if style == "sum":
        return values, sum(values.values())
    values = {name: 0.0 if math.isnan(value) else value for name, value in values.items()}
    return values, sum(values.values()) - values["L_p2"] + values["L_p"]


class TrainingLogger:
    """Writes one record per iteration and one per evaluation; a no-op on ranks other than 0."""

    def __init__(self, args: TrainingConfig | argparse.Namespace, rank: int = 0, resume_iteration: int = 0,
                 resume_epoch: int = 0) -> None:
        """``resume_iteration`` / ``resume_epoch``: where a resumed run starts; later records are dropped."""
        self.backend = args.log_backend if rank == 0 else "none"
        self.total_style = args.logged_total_loss
        self.save_dir = Path(args.model_save_path)
        self._writer: Any = None
        self._csv_file: Any = None
        self._csv: Any = None
        self._wandb: Any = None
        if self.backend == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard is not installed; logging to CSV instead (pip install tensorboard)")
                self.backend = "csv"
            else:
                self._writer = SummaryWriter(log_dir=str(self.save_dir / TENSORBOARD_DIR),
                                             purge_step=resume_iteration or None)
        if self.backend == "csv":
            path = self.save_dir / CSV_NAME
            keep_rows(path, _before(resume_iteration))
            keep_rows(self.save_dir / EVAL_CSV_NAME, _before(resume_epoch))
            fresh = not path.exists() or path.stat().st_size == 0
            self._csv_file = open(path, "a", newline="")
            self._csv = csv.writer(self._csv_file)
            if fresh:
                self._csv.writerow(["iteration", "epoch", *LOSS_NAMES, "loss", "lr", "iteration_time"])
        elif self.backend == "wandb":
            try:
                import wandb  # optional dependency
            except ImportError:
                raise ConfigError("log_backend 'wandb' needs the wandb package (pip install wandb), or choose "
                                  "--log_backend tensorboard, csv or none") from None

            self._wandb = wandb
            wandb.init(project="Track-On2", name=self.save_dir.name, config=vars(args))
            wandb.define_metric("iteration")
            wandb.define_metric("epoch")
            for tag in (*LOSS_TAGS.values(), TOTAL_TAG, LR_TAG, TIME_TAG):
                wandb.define_metric(tag, step_metric="iteration")
            wandb.define_metric("Evaluation/*", step_metric="epoch")

    def log_iteration(self, iteration: int, epoch: int, losses: Mapping[str, float], lr: float, seconds: float) -> None:
        """Record the loss terms (python floats), their total (``logged_total_loss``), the learning rate and the step
        time."""
        if self.backend == "none":
            return
        values, total = logged_values(losses, self.total_style)
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(LOSS_TAGS[name], value, iteration)
            self._writer.add_scalar(TOTAL_TAG, total, iteration)
            self._writer.add_scalar(LR_TAG, lr, iteration)
            self._writer.add_scalar(TIME_TAG, seconds, iteration)
        elif self._csv is not None:
            self._csv.writerow([iteration, epoch, *(f"{values[n]:.6g}" for n in LOSS_NAMES), f"{total:.6g}",
                                f"{lr:.6g}", f"{seconds:.4f}"])
        elif self._wandb is not None:
            record = {LOSS_TAGS[n]: v for n, v in values.items()}
            record.update({TOTAL_TAG: total, LR_TAG: lr, TIME_TAG: seconds, "iteration": iteration})
            self._wandb.log(record)

    def log_evaluation(self, epoch: int, scores: Mapping[str, float]) -> None:
        """Record an evaluation's scores (e.g. aj, oa, delta_avg) under Evaluation/<name>."""
        if self.backend == "none":
            return
        if self._writer is not None:
            for name, value in scores.items():
                self._writer.add_scalar(f"Evaluation/{name}", value, epoch)
        elif self._csv_file is not None:
            path = self.save_dir / EVAL_CSV_NAME
            fresh = not path.exists()
            with open(path, "a", newline="") as stream:
                writer = csv.writer(stream)
                if fresh:
                    writer.writerow(["epoch", *scores])
                writer.writerow([epoch, *(f"{v:.4f}" for v in scores.values())])
        elif self._wandb is not None:
            self._wandb.log({**{f"Evaluation/{k}": v for k, v in scores.items()}, "epoch": epoch})

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        if self._csv_file is not None:
            self._csv_file.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._csv_file is not None:
            self._csv_file.close()
        if self._wandb is not None:
            self._wandb.finish()
        self._writer = self._csv_file = self._csv = self._wandb = None
