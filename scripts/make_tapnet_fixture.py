"""Write tests/fixtures/tapnet_strided.npz: random TAP-Vid inputs and what google-deepmind/tapnet's own
``sample_queries_strided``, ``sample_queries_first`` and ``compute_tapvid_metrics`` make of them.

    python scripts/make_tapnet_fixture.py /path/to/tapnet/tapvid/evaluation_datasets.py

The tapnet file is imported as it is, with empty stand-ins for the modules it imports but these functions do not
use (TensorFlow, TFDS, mediapy, absl, scipy, tapnet.utils). tests/test_tapnet_strided.py compares ours against it.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tapnet_strided.npz"
UNUSED_IMPORTS = ("absl", "absl.logging", "mediapy", "scipy", "scipy.io", "tensorflow", "tensorflow_datasets",
                  "tapnet", "tapnet.utils", "tapnet.utils.transforms")
SAMPLING_CASES = ((12, 23, 0.3), (25, 31, 0.6), (5, 7, 0.9))  # (tracks, frames, occlusion probability)
METRIC_CASE = (2, 24, 21)  # (videos, queries, frames)


def load_tapnet(path: str) -> types.ModuleType:
    for name in UNUSED_IMPORTS:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["absl"].logging = sys.modules["absl.logging"]
    sys.modules["scipy"].io = sys.modules["scipy.io"]
    sys.modules["tapnet.utils"].transforms = sys.modules["tapnet.utils.transforms"]
    spec = importlib.util.spec_from_file_location("tapnet_evaluation_datasets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(tapnet_file: str) -> None:
    tapnet = load_tapnet(tapnet_file)
    rng = np.random.default_rng(20260)
    arrays: dict[str, np.ndarray] = {}
    for case, (tracks, frames, occlusion) in enumerate(SAMPLING_CASES):
        occluded = rng.random((tracks, frames)) < occlusion
        occluded[0] = True  # a track never visible
        occluded[-1, -1] = False  # and at least one visible point
        points = (rng.random((tracks, frames, 2)) * 256).astype(np.float32)
        video = np.zeros((frames, 1, 1, 3), np.float32)
        arrays[f"sampling{case}_occluded"] = occluded
        arrays[f"sampling{case}_points"] = points
        for mode, sample in (("strided", tapnet.sample_queries_strided), ("first", tapnet.sample_queries_first)):
            result = sample(occluded, points, video)
            for key in ("query_points", "target_points", "occluded", "trackgroup"):
                if key in result:
                    arrays[f"sampling{case}_{mode}_{key}"] = result[key][0]

    videos, queries, frames = METRIC_CASE
    gt_occluded = rng.random((videos, queries, frames)) < 0.3
    gt_tracks = rng.random((videos, queries, frames, 2)) * 256
    query_frames = rng.integers(0, frames, (videos, queries))
    gt_occluded[np.arange(videos)[:, None], np.arange(queries)[None], query_frames] = False
    query_points = np.stack([query_frames.astype(np.float64), rng.random((videos, queries)) * 256,
                             rng.random((videos, queries)) * 256], axis=-1)
    pred_tracks = gt_tracks + rng.normal(0, 6, gt_tracks.shape)
    pred_occluded = np.where(rng.random(gt_occluded.shape) < 0.8, gt_occluded, ~gt_occluded)
    inputs = dict(query_points=query_points, gt_occluded=gt_occluded, gt_tracks=gt_tracks,
                  pred_occluded=pred_occluded, pred_tracks=pred_tracks)
    arrays.update({f"metrics_{key}": value for key, value in inputs.items()})
    for mode in ("strided", "first"):
        for trackwise in (False, True):
            result = tapnet.compute_tapvid_metrics(**inputs, query_mode=mode, get_trackwise_metrics=trackwise)
            for key, value in result.items():
                arrays[f"metrics_{mode}_{'track' if trackwise else 'video'}_{key}"] = np.asarray(value)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUTPUT, **arrays)
    print(f"wrote {OUTPUT} ({len(arrays)} arrays)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
