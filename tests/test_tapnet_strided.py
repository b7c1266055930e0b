"""Strided (and first) TAP-Vid queries and metrics against google-deepmind/tapnet's own functions on random data.

The fixture tests/fixtures/tapnet_strided.npz was made by scripts/make_tapnet_fixture.py, which runs tapnet's
``sample_queries_strided``, ``sample_queries_first`` and ``compute_tapvid_metrics``
(tapnet/tapvid/evaluation_datasets.py) on random inputs stored next to their outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trackon2.dataset.tapvid_queries import sample_queries
from trackon2.evaluation.metrics import compute_tapvid_metrics

FIXTURE = np.load(Path(__file__).parent / "fixtures" / "tapnet_strided.npz")
CASES = sorted({key.split("_")[0] for key in FIXTURE.files if key.startswith("sampling")})


@pytest.mark.parametrize("mode", ["strided", "first"])
@pytest.mark.parametrize("case", CASES)
def test_query_sampling_matches_tapnet(case: str, mode: str) -> None:
    """Same rows in the same order with the same values (tapnet's float64 queries hold our float32 values)."""
    ours = sample_queries(FIXTURE[f"{case}_occluded"], FIXTURE[f"{case}_points"], mode)
    for key in ("query_points", "target_points", "occluded", "trackgroup"):
        name = f"{case}_{mode}_{key}"
        if name not in FIXTURE.files:  # tapnet's 'first' sampling returns no trackgroup
            continue
        expected = FIXTURE[name]
        assert ours[key].shape == expected.shape, key
        np.testing.assert_array_equal(ours[key], expected.astype(ours[key].dtype), err_msg=key)
        np.testing.assert_array_equal(ours[key].astype(expected.dtype), expected, err_msg=key)



@pytest.mark.parametrize("trackwise", [False, True])
@pytest.mark.parametrize("mode", ["strided", "first"])
def test_metrics_match_tapnet_exactly(mode: str, trackwise: bool) -> None:
    inputs = {key: FIXTURE[f"metrics_{key}"] for key in
              ("query_points", "gt_occluded", "gt_tracks", "pred_occluded", "pred_tracks")}
    with np.errstate(invalid="ignore", divide="ignore"):
        ours = compute_tapvid_metrics(**inputs, query_mode=mode, get_trackwise_metrics=trackwise)
    prefix = f"metrics_{mode}_{'track' if trackwise else 'video'}_"
    expected = {key[len(prefix):]: FIXTURE[key] for key in FIXTURE.files if key.startswith(prefix)}
    assert set(ours) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)  # bit for bit, NaN where tapnet has NaN
    assert np.isfinite(expected["average_jaccard"]).any()


def test_the_fixture_covers_several_query_frames_and_an_empty_case() -> None:
    frames = [np.unique(FIXTURE[f"{case}_strided_query_points"][:, 0]).size for case in CASES]
    assert max(frames) > 2 and min(frames) == 0  # many strided query frames; one clip with no query at all


def test_strided_and_first_metrics_differ_on_this_data() -> None:
    """The fixture's queries do not all start on frame 0, so the protocols score different frames."""
    assert not np.array_equal(FIXTURE["metrics_strided_video_average_jaccard"],
                              FIXTURE["metrics_first_video_average_jaccard"])
