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

from trackon2.model.verifier.ensemble_tracker import EnsembleTracker
from trackon2.runtime.predictor import Predictor
from trackon2.video.clip_tracking import track_frames
from trackon2.video.drawing import TrailRenderer
from trackon2.video.files import write_video
from trackon2.webapp.clip import Clip


@dataclass
class TrackingRun:
    """Files written for one run of the tracker on a clip."""

    overlay: Path
    npz: Path
    json: Path
    csv: Path
    frames: int
    points: int
    result: dict[str, np.ndarray]  # what the downloads hold: queries, tracks, visibility, confidence, first_frame


def track_clip(clip: Clip, predictor: Predictor, out_dir: Path, autocast: contextlib.AbstractContextManager,
               on_frame: Callable[[int], None] | None = None, backward: bool = False) -> TrackingRun:
    """Track the clip's queries with ``predictor`` (a per-session stream) and write the overlay and the tracks.

    On its query frame each track is the clicked point itself (and visible); elsewhere it is the model's estimate.
    With ``backward`` each track also runs back from its query frame to frame 0; without, before its query frame
    a track is (0, 0) and not visible. ``on_frame(done)`` counts the frames stepped (``frames_to_track``).
    """
    queries = clip.query_array()
    result = track_frames(clip.frames, queries, predictor, backward=backward, autocast=autocast, on_frame=on_frame)
    result["first_frame"] = np.zeros(len(queries), np.int64) if backward else queries[:, 0].astype(np.int64)
    return _write_run(clip, result, out_dir)


def track_clip_with_ensemble(clip: Clip, ensemble: EnsembleTracker, out_dir: Path,
                             autocast: contextlib.AbstractContextManager) -> TrackingRun:
    """Run every candidate tracker and the verifier on the whole clip and write what ``track_clip`` writes, plus
    the candidates' tracks and the verifier's choice. ``confidence`` is the verifier's softmax weight of the
    chosen candidate; on its query frame a track is the clicked point (visible), as in ``track_clip``."""
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
              "chosen": outcome.choice[0].cpu().numpy(),
              "first_frame": queries[:, 0].astype(np.int64)}
    starts = queries[:, 0].astype(int)
    result["tracks"][starts, np.arange(len(queries))] = queries[:, 1:]
    result["visibility"][starts, np.arange(len(queries))] = True
    return _write_run(clip, result, out_dir)


def _write_run(clip: Clip, result: dict[str, np.ndarray], out_dir: Path) -> TrackingRun:
    """Write the overlay, NPZ, JSON and CSV of one run's ``result``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run = TrackingRun(overlay=out_dir / "overlay.mp4", npz=out_dir / "tracks.npz", json=out_dir / "tracks.json",
                      csv=out_dir / "tracks.csv", frames=len(clip.frames), points=len(result["queries"]),
                      result=result)
    write_video(run.overlay, draw_overlay(clip.frames, result), fps=clip.fps)
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


def draw_overlay(frames: list[np.ndarray], result: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every frame with the tracks that exist on it (from each one's ``first_frame`` on) and their recent trail."""
    renderer = TrailRenderer()
    drawn = []
    for t, frame in enumerate(frames):
        ids = np.flatnonzero(result["first_frame"] <= t)
        drawn.append(renderer.draw(frame, ids.tolist(), result["tracks"][t, ids], result["visibility"][t, ids]))
    return drawn


def write_tracks_csv(path: Path, result: dict[str, np.ndarray]) -> None:
    """One row per (point, frame) from the point's first tracked frame on (``first_frame``: its query frame, or 0
    when tracked backward too): point, frame, x, y, visible, confidence."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["point", "frame", "x", "y", "visible", "confidence"])
        first_frames = result.get("first_frame", result["queries"][:, 0])
        for point, start in enumerate(first_frames):
            for frame in range(int(start), len(result["tracks"])):
                x, y = result["tracks"][frame, point]
                writer.writerow([point, frame, f"{x:.2f}", f"{y:.2f}", int(result["visibility"][frame, point]),
                                 f"{result['confidence'][frame, point]:.4f}"])
