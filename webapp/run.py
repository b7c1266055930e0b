"""Tracking a clip's queries and writing what the user downloads: overlay MP4 and tracks as NPZ, JSON and CSV."""

from __future__ import annotations

import contextlib
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from runtime.predictor import Predictor
from video.live_source import FrameListSource
from video.live_tracking import track_live
from video.files import write_video
from model.verifier.ensemble_tracker import EnsembleTracker
from video.drawing import TrailRenderer
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
    return _write_run(result, queries, recording.overlay, clip.fps, out_dir)


def track_clip_with_ensemble(clip: Clip, ensemble: EnsembleTracker, out_dir: Path,
                             autocast: contextlib.AbstractContextManager) -> TrackingRun:
    """Run every candidate tracker and the verifier on the whole clip and write what ``track_clip`` writes, plus
    the candidates' tracks and the verifier's choice. ``confidence`` is the verifier's softmax weight of the
    chosen candidate."""
    queries = clip.query_array()
    device = ensemble.ensemble.verifier.time_emb.device
    video = torch.from_numpy(np.stack(clip.frames)).permute(0, 3, 1, 2)[None].to(device, torch.float32)
    with autocast:
        outcome = ensemble.track(video, torch.from_numpy(queries)[None].to(device))
    result = {"queries": queries, "tracks": outcome.tracks[0].float().cpu().numpy(),
              "visibility": outcome.visibility[0].cpu().numpy(),
              "confidence": outcome.choice_probability[0].cpu().numpy(),
              "candidates": np.array(outcome.candidate_names),
              "candidate_tracks": outcome.candidate_tracks[0].float().cpu().numpy(),
              "candidate_visibility": outcome.candidate_visibility[0].cpu().numpy(),
              "chosen": outcome.choice[0].cpu().numpy()}
    renderer, starts, overlay = TrailRenderer(), queries[:, 0].astype(int), []
    for t, frame in enumerate(clip.frames):
        started = np.flatnonzero(starts <= t)
        overlay.append(renderer.draw(frame, started.tolist(), result["tracks"][t, started],
                                     result["visibility"][t, started]))
    return _write_run(result, queries, overlay, clip.fps, out_dir)


def _write_run(result: dict[str, np.ndarray], queries: np.ndarray, overlay: list[np.ndarray], fps: float,
               out_dir: Path) -> TrackingRun:
    """Pin each track to its clicked point on its query frame, then write the overlay, NPZ, JSON and CSV."""
    starts = queries[:, 0].astype(int)
    result["tracks"][starts, np.arange(len(queries))] = queries[:, 1:]
    result["visibility"][starts, np.arange(len(queries))] = True
    out_dir.mkdir(parents=True, exist_ok=True)
    run = TrackingRun(overlay=out_dir / "overlay.mp4", npz=out_dir / "tracks.npz", json=out_dir / "tracks.json",
                      csv=out_dir / "tracks.csv", frames=len(result["tracks"]), points=len(queries))
    write_video(run.overlay, overlay, fps=fps)
    np.savez_compressed(run.npz, **result)
    run.json.write_text(json.dumps({key: value.tolist() for key, value in result.items()}))
    write_tracks_csv(run.csv, result)
    return run


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
