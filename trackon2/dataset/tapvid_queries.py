"""TAP-Vid query sampling, as tapnet defines the two evaluation modes.

``first``: one query per track, at its first visible frame; tracks never visible are dropped.
``strided``: for every 5th frame ``t`` (0, 5, 10, ...), one query per track visible at ``t``; a track appears once
per such frame, and ``trackgroup`` says which original track each row came from.
Queries are (t, y, x) rows, as in tapnet; both modes give tapnet's rows in tapnet's order (tested against its
``sample_queries_first`` / ``sample_queries_strided`` on random tracks).
"""

from __future__ import annotations

import numpy as np

QUERY_MODES = ("first", "strided")


def sample_queries_first(occluded: np.ndarray, points: np.ndarray) -> dict[str, np.ndarray]:
    """``occluded`` (N, T) bool and ``points`` (N, T, 2) -> query_points (M, 3), target_points (M, T, 2),
    occluded (M, T) and trackgroup (M,) for the M tracks visible at least once."""
    valid = (~occluded).any(axis=1)
    points, occluded = points[valid], occluded[valid]
    first = np.argmax(~occluded, axis=1)
    rows = np.arange(len(points))
    query = np.stack([first, points[rows, first, 1], points[rows, first, 0]], axis=-1).astype(np.float32)
    return {
        "query_points": query.reshape(-1, 3),
        "target_points": points,
        "occluded": occluded,
        "trackgroup": np.flatnonzero(valid),
    }


def sample_queries_strided(occluded: np.ndarray, points: np.ndarray, stride: int = 5) -> dict[str, np.ndarray]:
    """Like ``sample_queries_first`` but with a query at every ``stride``-th frame where a track is visible."""
    queries, tracks, occs, groups = [], [], [], []
    for t in range(0, occluded.shape[1], stride):
        mask = ~occluded[:, t]
        query = np.stack([np.full(mask.sum(), t), points[mask, t, 1], points[mask, t, 0]], axis=-1)
        queries.append(query.astype(np.float32))
        tracks.append(points[mask])
        occs.append(occluded[mask])
        groups.append(np.flatnonzero(mask))
    return {
        "query_points": np.concatenate(queries).reshape(-1, 3),
        "target_points": np.concatenate(tracks),
        "occluded": np.concatenate(occs),
        "trackgroup": np.concatenate(groups),
    }


def sample_queries(occluded: np.ndarray, points: np.ndarray, mode: str) -> dict[str, np.ndarray]:
    """Dispatch on ``mode`` (``first`` or ``strided``)."""
    if mode == "first":
        return sample_queries_first(occluded, points)
    if mode == "strided":
        return sample_queries_strided(occluded, points)
    raise ValueError(f"query mode must be one of {QUERY_MODES}, got {mode!r}")
