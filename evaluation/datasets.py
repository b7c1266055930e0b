"""Build the evaluation dataset for a benchmark name, as the reference's eval.py does."""

from __future__ import annotations

from torch.utils.data import Dataset

from evaluation.evaluator import DATASETS, TAPVID_DATASETS


def build_dataset(name: str, path: str) -> Dataset:
    """The reader of ``name`` (one of ``DATASETS``) over the file or folder ``path``."""
    if name in TAPVID_DATASETS:
        from dataset.tapvid import TAPVid

        return TAPVid(None, data_root=path, dataset_type=name)
    if name == "point_odyssey":
        from dataset.point_odyssey import PointOdysseyDataset

        return PointOdysseyDataset(path, "test", 256)
    if name == "dynamic_replica":
        from dataset.dynamic_replica import DynamicReplicaDataset

        return DynamicReplicaDataset(path, sample_len=300, only_first_n_samples=1)
    raise ValueError(f"Unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
