"""TAP-Vid metric tests: hand-made cases and a loop-based re-derivation on random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from trackon2.evaluation.metrics import THRESHOLDS, compute_tapvid_metrics, evaluation_mask, tapvid_video_summary


def _single_video(num_frames: int = 6, num_points: int = 3, query_frame: int = 0):
    rng = np.random.default_rng(0)
    tracks = rng.uniform(0, 255, size=(1, num_points, num_frames, 2))
    occluded = np.zeros((1, num_points, num_frames), dtype=bool)
    queries = np.zeros((1, num_points, 3))
    queries[..., 0] = query_frame
    queries[..., 1] = tracks[0, :, query_frame, 1]
    queries[..., 2] = tracks[0, :, query_frame, 0]
    return queries, occluded, tracks


def test_perfect_prediction_scores_100() -> None:
    queries, occluded, tracks = _single_video()
    occluded[0, 1, 3:] = True
    metrics = compute_tapvid_metrics(queries, occluded, tracks, occluded.copy(), tracks.copy(), "first")
    for key, value in metrics.items():
        assert value.shape == (1,)
        assert value[0] == 1.0, key
    summary = tapvid_video_summary(metrics)
    assert summary["aj"] == summary["delta_avg"] == summary["oa"] == 100.0


def test_evaluation_mask_first_and_strided() -> None:
    queries = np.array([[[2.0, 0, 0], [0.4, 0, 0]]])
    first = evaluation_mask(queries, 5, "first")
    strided = evaluation_mask(queries, 5, "strided")
    np.testing.assert_array_equal(first[0, 0], [False, False, False, True, True])
    np.testing.assert_array_equal(first[0, 1], [False, True, True, True, True])
    np.testing.assert_array_equal(strided[0, 0], [True, True, False, True, True])
    with pytest.raises(ValueError):
        evaluation_mask(queries, 5, "bogus")


def test_known_occlusion_accuracy() -> None:
    # 1 point, 5 frames, query at 0 -> frames 1..4 scored; predicted occlusion wrong on frames 1 and 2.
    queries, occluded, tracks = _single_video(num_frames=5, num_points=1)
    pred_occluded = occluded.copy()
    pred_occluded[0, 0, [0, 1, 2]] = True  # frame 0 is the query frame: not scored
    metrics = compute_tapvid_metrics(queries, occluded, tracks, pred_occluded, tracks, "first")
    assert metrics["occlusion_accuracy"][0] == pytest.approx(0.5)
    assert metrics["pts_within_1"][0] == 1.0  # position accuracy ignores predicted occlusion
    # Jaccard: TP = 2 (frames 3, 4), GT positives = 4, no false positive -> 0.5
    assert metrics["average_jaccard"][0] == pytest.approx(0.5)


def test_known_position_thresholds() -> None:
    queries, occluded, tracks = _single_video(num_frames=5, num_points=1)
    pred = tracks.copy()
    pred[0, 0, 1:, 0] += np.array([0.5, 1.5, 3.0, 20.0])  # within 1 / 2 / 4 / none
    metrics = compute_tapvid_metrics(queries, occluded, tracks, occluded, pred, "first")
    expected = {1: 0.25, 2: 0.5, 4: 0.75, 8: 0.75, 16: 0.75}
    for thresh, value in expected.items():
        assert metrics[f"pts_within_{thresh}"][0] == pytest.approx(value)
        # every visible prediction outside the threshold is a false positive on top of the 4 GT positives
        true_positives = value * 4
        assert metrics[f"jaccard_{thresh}"][0] == pytest.approx(true_positives / (4 + 4 - true_positives))
    assert metrics["average_pts_within_thresh"][0] == pytest.approx(np.mean(list(expected.values())))


def test_false_positive_on_occluded_frame() -> None:
    queries, occluded, tracks = _single_video(num_frames=5, num_points=1)
    occluded[0, 0, 4] = True
    metrics = compute_tapvid_metrics(queries, occluded, tracks, np.zeros_like(occluded), tracks, "first")
    assert metrics["jaccard_1"][0] == pytest.approx(3 / 4)  # TP 3, GT positives 3, FP 1
    assert metrics["pts_within_1"][0] == 1.0
    assert metrics["occlusion_accuracy"][0] == pytest.approx(3 / 4)


def test_strided_scores_frames_before_query() -> None:
    queries, occluded, tracks = _single_video(num_frames=5, num_points=1, query_frame=2)
    pred = tracks.copy()
    pred[0, 0, :2] += 100.0  # wrong before the query frame only
    first = compute_tapvid_metrics(queries, occluded, tracks, occluded, pred, "first")
    strided = compute_tapvid_metrics(queries, occluded, tracks, occluded, pred, "strided")
    assert first["average_pts_within_thresh"][0] == 1.0
    assert strided["average_pts_within_thresh"][0] == pytest.approx(0.5)  # frames 0,1 wrong; 3,4 right


def test_per_video_denominators_in_a_batch() -> None:
    q1, o1, t1 = _single_video(num_frames=4, num_points=2)
    q2, o2, t2 = _single_video(num_frames=4, num_points=2, query_frame=2)
    queries, occluded, tracks = np.concatenate([q1, q2]), np.concatenate([o1, o2]), np.concatenate([t1, t2])
    metrics = compute_tapvid_metrics(queries, occluded, tracks, occluded, tracks, "first")
    np.testing.assert_array_equal(metrics["occlusion_accuracy"], [1.0, 1.0])
    trackwise = compute_tapvid_metrics(queries, occluded, tracks, occluded, tracks, "first", get_trackwise_metrics=True)
    assert trackwise["average_jaccard"].shape == (2, 2)


def _loop_metrics(queries, gt_occ, gt_tracks, pred_occ, pred_tracks, mode: str) -> dict[str, np.ndarray]:
    """Straightforward per-point, per-frame re-derivation of the TAP-Vid definitions."""
    batch, num_points, num_frames = gt_occ.shape
    out: dict[str, list[float]] = {}
    for b in range(batch):
        occ_right = scored_total = 0
        visible_total = 0
        within = {t: 0 for t in THRESHOLDS}
        true_pos = {t: 0 for t in THRESHOLDS}
        false_pos = {t: 0 for t in THRESHOLDS}
        for n in range(num_points):
            query_frame = int(np.round(queries[b, n, 0]))
            for f in range(num_frames):
                if f == query_frame or (mode == "first" and f < query_frame):
                    continue
                scored_total += 1
                occ_right += int(gt_occ[b, n, f] == pred_occ[b, n, f])
                gt_vis, pred_vis = not gt_occ[b, n, f], not pred_occ[b, n, f]
                visible_total += int(gt_vis)
                dist = np.hypot(*(pred_tracks[b, n, f] - gt_tracks[b, n, f]))
                for t in THRESHOLDS:
                    close = dist < t
                    within[t] += int(close and gt_vis)
                    true_pos[t] += int(close and gt_vis and pred_vis)
                    false_pos[t] += int(pred_vis and (not gt_vis or not close))
        out.setdefault("occlusion_accuracy", []).append(occ_right / scored_total)
        for t in THRESHOLDS:
            out.setdefault(f"pts_within_{t}", []).append(within[t] / visible_total)
            out.setdefault(f"jaccard_{t}", []).append(true_pos[t] / (visible_total + false_pos[t]))
    result = {k: np.array(v) for k, v in out.items()}
    result["average_jaccard"] = np.mean([result[f"jaccard_{t}"] for t in THRESHOLDS], axis=0)
    result["average_pts_within_thresh"] = np.mean([result[f"pts_within_{t}"] for t in THRESHOLDS], axis=0)
    return result


@pytest.mark.parametrize("mode", ["first", "strided"])
def test_matches_loop_rederivation_on_random_inputs(mode: str) -> None:
    rng = np.random.default_rng(42)
    batch, num_points, num_frames = 3, 7, 9
    gt_tracks = rng.uniform(0, 64, size=(batch, num_points, num_frames, 2))
    pred_tracks = gt_tracks + rng.normal(0, 6, size=gt_tracks.shape)
    gt_occ = rng.random((batch, num_points, num_frames)) < 0.3
    pred_occ = rng.random((batch, num_points, num_frames)) < 0.3
    queries = np.zeros((batch, num_points, 3))
    queries[..., 0] = rng.integers(0, num_frames, size=(batch, num_points)) + rng.uniform(-0.4, 0.4, (batch, num_points))
    queries[..., 0] = np.clip(queries[..., 0], 0, num_frames - 1)
    got = compute_tapvid_metrics(queries, gt_occ, gt_tracks, pred_occ, pred_tracks, mode)
    want = _loop_metrics(queries, gt_occ, gt_tracks, pred_occ, pred_tracks, mode)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=0, err_msg=key)
