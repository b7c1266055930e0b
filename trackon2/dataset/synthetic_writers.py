"""Write generated clips in the on-disk layouts of the real datasets, so each reader can be tested on real files.

Every writer renders clip ``i`` from seed ``seed + i`` and returns what it wrote, so a test can compare the reader's
output with the generated ground truth (``generate_clip(seed + i, ...)``).
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from trackon2.dataset.synthetic_clip import SyntheticClip, generate_clip


def _clips(num_videos: int, seed: int, clip_kwargs: dict[str, Any]) -> list[SyntheticClip]:
    return [generate_clip(seed + i, **clip_kwargs) for i in range(num_videos)]


def _encode(frame: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _dump_pickle(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)


def tapvid_entry(clip: SyntheticClip, encoded: str | None = None) -> dict[str, Any]:
    """A TAP-Vid item: ``points`` (N, T, 2) in [0, 1], ``occluded`` (N, T) bool and the video as a uint8 array, or as
    a list of encoded frames when ``encoded`` is ``"JPEG"`` or ``"PNG"``."""
    _, height, width, _ = clip.video.shape
    video = clip.video if encoded is None else [_encode(frame, encoded) for frame in clip.video]
    return {
        "video": video,
        "points": (clip.tracks / np.array([width, height], dtype=np.float32)).transpose(1, 0, 2).astype(np.float32),
        "occluded": ~clip.visibility.T,
    }


def write_movi_f(root: str | Path, num_videos: int, seed: int = 0, **clip_kwargs: Any) -> list[Path]:
    """CoTracker Kubric MOVi-F layout: ``root/<name>/frames/NNN.png`` and ``root/<name>/<name>.npy``, a pickled dict
    with ``coords`` (N, T, 2) pixels and ``visibility`` (N, T), which in these files holds occlusion flags
    (True = occluded)."""
    folders = []
    for i, clip in enumerate(_clips(num_videos, seed, clip_kwargs)):
        name = f"{i:04d}"
        folder = Path(root) / name
        (folder / "frames").mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(clip.video):
            Image.fromarray(frame).save(folder / "frames" / f"{t:03d}.png")
        annotation = {"coords": clip.tracks.transpose(1, 0, 2).copy(), "visibility": ~clip.visibility.T}
        np.save(folder / f"{name}.npy", np.array(annotation, dtype=object), allow_pickle=True)
        folders.append(folder)
    return folders


def write_tapvid_davis(pkl_path: str | Path, num_videos: int, seed: int = 0, **clip_kwargs: Any) -> Path:
    """TAP-Vid DAVIS: one pickle, a dict from video name to item with the video as a uint8 (T, H, W, 3) array."""
    data = {f"video_{i:03d}": tapvid_entry(clip) for i, clip in enumerate(_clips(num_videos, seed, clip_kwargs))}
    _dump_pickle(data, Path(pkl_path))
    return Path(pkl_path)


def write_tapvid_rgb_stacking(pkl_path: str | Path, num_videos: int, seed: int = 0, **clip_kwargs: Any) -> Path:
    """TAP-Vid RGB-Stacking: one pickle holding a list of items."""
    _dump_pickle([tapvid_entry(clip) for clip in _clips(num_videos, seed, clip_kwargs)], Path(pkl_path))
    return Path(pkl_path)


def write_tapvid_kinetics(root: str | Path, num_videos: int, seed: int = 0, **clip_kwargs: Any) -> list[Path]:
    """TAP-Vid Kinetics: ``root/NNNN_of_0010.pkl`` shards, each a list of items whose frames are JPEG bytes.
    Videos go to shards round-robin; clip ``i`` is item ``i // shards`` of shard ``i % shards``."""
    clips = _clips(num_videos, seed, clip_kwargs)
    shards = min(10, max(1, num_videos))
    paths = []
    for shard in range(shards):
        path = Path(root) / f"{shard:04d}_of_0010.pkl"
        _dump_pickle([tapvid_entry(clip, "JPEG") for clip in clips[shard::shards]], path)
        paths.append(path)
    return paths


def write_robotap(root: str | Path, num_videos: int, seed: int = 0, num_splits: int = 2, **clip_kwargs: Any) -> list[Path]:
    """RoboTAP: ``root/robotap_split<k>.pkl`` files, each a dict from video name to item; clip ``i`` goes to split
    ``i % num_splits``."""
    clips = _clips(num_videos, seed, clip_kwargs)
    paths = []
    for split in range(num_splits):
        items = {f"robotap_{i:03d}": tapvid_entry(clips[i]) for i in range(split, num_videos, num_splits)}
        path = Path(root) / f"robotap_split{split}.pkl"
        _dump_pickle(items, path)
        paths.append(path)
    return paths


def write_point_odyssey(
    root: str | Path, num_videos: int, seed: int = 0, split: str = "test", **clip_kwargs: Any
) -> list[Path]:
    """PointOdyssey: ``root/<split>/<seq>/rgbs/rgb_%05d.jpg`` and ``anno.npz`` with ``trajs_2d`` (T, N, 2) pixels,
    ``visibs`` (T, N) uint8 codes (0 occluded, 1 visible; 2, invalid, is never written) and ``valids`` (T, N)."""
    folders = []
    for i, clip in enumerate(_clips(num_videos, seed, clip_kwargs)):
        folder = Path(root) / split / f"seq_{i:03d}"
        (folder / "rgbs").mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(clip.video):
            Image.fromarray(frame).save(folder / "rgbs" / f"rgb_{t:05d}.jpg", quality=95)
        np.savez(
            folder / "anno.npz",
            trajs_2d=clip.tracks,
            visibs=clip.visibility.astype(np.uint8),
            valids=np.ones_like(clip.visibility),
        )
        folders.append(folder)
    return folders


def write_dynamic_replica(
    root: str | Path, num_videos: int, seed: int = 0, split: str = "test", **clip_kwargs: Any
) -> Path:
    """Dynamic Replica: ``root/<split>/frame_annotations_<split>.jgz`` (gzipped JSON list of frame annotations, left
    and right cameras) and one ``.pth`` per left frame holding ``img`` (H, W, 3) uint8, ``traj_2d`` (N, 3) with
    (x, y, depth) and ``verts_inds_vis`` (N,) bool."""
    split_dir = Path(root) / split
    annotations = []
    for i, clip in enumerate(_clips(num_videos, seed, clip_kwargs)):
        sequence = f"synthetic_{i:03d}"
        _, height, width, _ = clip.video.shape
        for t, frame in enumerate(clip.video):
            traj_rel = f"{sequence}/trajectories/{t:06d}.pth"
            (split_dir / traj_rel).parent.mkdir(parents=True, exist_ok=True)
            depth = np.ones((clip.tracks.shape[1], 1), dtype=np.float32)
            torch.save(
                {
                    "img": torch.from_numpy(frame.copy()),
                    "traj_2d": torch.from_numpy(np.concatenate([clip.tracks[t], depth], axis=1)),
                    "verts_inds_vis": torch.from_numpy(clip.visibility[t].copy()),
                },
                split_dir / traj_rel,
            )
            for camera in ("left", "right"):
                annotations.append(
                    {
                        "sequence_name": sequence,
                        "frame_number": t,
                        "frame_timestamp": t / 30.0,
                        "image": {"path": f"{sequence}/images/{camera}_{t:06d}.png", "size": [height, width]},
                        "meta": {},
                        "camera_name": camera,
                        "trajectories": {"path": traj_rel} if camera == "left" else None,
                    }
                )
    path = split_dir / f"frame_annotations_{split}.jgz"
    split_dir.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf8") as handle:
        json.dump(annotations, handle)
    return path


def write_ego_points(root: str | Path, num_videos: int, seed: int = 0, **clip_kwargs: Any) -> list[Path]:
    """EgoPoints: ``root/<seq>/rgbs/NNNNN.jpg`` and ``annot.npz`` with ``trajs_2d`` (T, N, 2) pixels and the (T, N)
    uint8 flags ``visibs`` (the clip's visibility), ``out_of_view`` (outside the frame), ``occluded`` (in the frame
    and not visible), ``valids`` (in the frame) and ``vis_valids`` (all 1)."""
    folders = []
    for i, clip in enumerate(_clips(num_videos, seed, clip_kwargs)):
        folder = Path(root) / f"ego_{i:03d}"
        (folder / "rgbs").mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(clip.video):
            Image.fromarray(frame).save(folder / "rgbs" / f"{t:05d}.jpg", quality=95)
        _, height, width, _ = clip.video.shape
        x, y = clip.tracks[..., 0], clip.tracks[..., 1]
        inside = (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
        flags = {"visibs": clip.visibility, "out_of_view": ~inside, "occluded": inside & ~clip.visibility,
                 "valids": inside, "vis_valids": np.ones_like(inside)}
        np.savez(folder / "annot.npz", trajs_2d=clip.tracks, **{key: v.astype(np.uint8) for key, v in flags.items()})
        folders.append(folder)
    return folders
