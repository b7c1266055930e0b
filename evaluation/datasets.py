"""Build the evaluation dataset for a benchmark name, as the reference's eval.py does."""

from __future__ import annotations

from pathlib import Path

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


def video_name(dataset: Dataset, index: int) -> str:
    """A readable name for video ``index``: the TAP-Vid source entry, the PointOdyssey sequence folder or the
    Dynamic Replica sequence; the index itself for other datasets."""
    if hasattr(dataset, "items"):  # TAPVid: (source label, item) pairs
        return Path(dataset.items[index][0]).name
    if hasattr(dataset, "sequences"):  # PointOdysseyDataset
        return Path(dataset.sequences[index]).name
    if hasattr(dataset, "sample_list"):  # DynamicReplicaDataset
        return str(dataset.sample_list[index][0]["sequence_name"])
    return str(index)
