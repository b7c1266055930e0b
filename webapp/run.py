"""Tracking a clip's queries and writing what the user downloads: overlay MP4 and tracks as NPZ, JSON and CSV."""

from __future__ import annotations

import contextlib
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from model.trackon_predictor import Predictor
from utils.live_source import FrameListSource
from utils.live_tracking import track_live
from utils.video_io import write_video
from webapp.clip import Clip


@dataclass
class TrackingRun:
    """Files written for one run of the tracker on a clip."""

    overlay: Path
    npz: Path
    json: Path
    csv: Path
    frames: int
    points: int


def track_clip(clip: Clip, predictor: Predictor, out_dir: Path, autocast: contextlib.AbstractContextManager,
               on_frame: Callable[[int], None] | None = None) -> TrackingRun:
    """Stream the clip through ``predictor`` (a per-session stream) and write the overlay and the tracks.

    On its query frame each track is the clicked point itself (and visible); elsewhere it is the model's estimate.
    Before its query frame a track is (0, 0) and not visible.
    """
    queries = clip.query_array()
    recording = track_live(FrameListSource(clip.frames, clip.name), predictor, lambda height, width: queries,
                           autocast=autocast, on_frame=on_frame)
    result = recording.as_arrays()
    del result["source_frame"]
    starts = queries[:, 0].astype(int)
    result["tracks"][starts, np.arange(len(queries))] = queries[:, 1:]
    result["visibility"][starts, np.arange(len(queries))] = True
    out_dir.mkdir(parents=True, exist_ok=True)
    run = TrackingRun(overlay=out_dir / "overlay.mp4", npz=out_dir / "tracks.npz", json=out_dir / "tracks.json",
                      csv=out_dir / "tracks.csv", frames=len(recording.tracks), points=len(queries))
    write_video(run.overlay, recording.overlay, fps=clip.fps)
    write_track_files(out_dir, result)
    return run


def write_track_files(out_dir: Path, result: dict[str, np.ndarray]) -> list[Path]:
    """tracks.npz, tracks.json and tracks.csv of ``result`` (queries, tracks, visibility, confidence) in
    ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "tracks.npz", out_dir / "tracks.json", out_dir / "tracks.csv"]
    np.savez_compressed(paths[0], **result)
    paths[1].write_text(json.dumps({key: value.tolist() for key, value in result.items()}))
    write_tracks_csv(paths[2], result)
    return paths


def write_tracks_csv(path: Path, result: dict[str, np.ndarray]) -> None:
    """One row per (point, frame) from the point's query frame on: point, frame, x, y, visible, confidence."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["point", "frame", "x", "y", "visible", "confidence"])
        for point, (start, _, _) in enumerate(result["queries"]):
            for frame in range(int(start), len(result["tracks"])):
                x, y = result["tracks"][frame, point]
                writer.writerow([point, frame, f"{x:.2f}", f"{y:.2f}", int(result["visibility"][frame, point]),
                                 f"{result['confidence'][frame, point]:.4f}"])
