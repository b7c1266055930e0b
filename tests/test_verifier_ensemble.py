"""The verifier ensemble chooses as the reference's verifier predictor does, and combines trackers into a tracker."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_model import tiny_config
from tests.tiny_verifier import tiny_verifier_config
from trackon2.model.trackon_predictor import Predictor
from trackon2.model.verifier import Verifier
from trackon2.model.verifier.ensemble import VerifierEnsemble, majority_visibility
from trackon2.model.verifier.ensemble_tracker import EnsembleTracker


@pytest.fixture(scope="module")
def ensemble() -> VerifierEnsemble:
    torch.manual_seed(0)
    return VerifierEnsemble(Verifier(tiny_verifier_config()))


def _candidates(count: int = 3, frames: int = 5, points: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(1, frames, 3, 64, 96, generator=g) * 255
    queries = torch.cat([torch.tensor([[[0.0], [2.0], [1.0], [0.0]]])[:, :points],
                         torch.rand(1, points, 2, generator=g) * torch.tensor([96.0, 64.0])], dim=2)
    tracks = torch.rand(1, count, frames, points, 2, generator=g) * torch.tensor([96.0, 64.0])
    visibility = torch.rand(1, count, frames, points, generator=g) > 0.5
    return video, queries, tracks, visibility


def test_select_takes_the_highest_ranked_candidate(ensemble):
    video, queries, tracks, visibility = _candidates()
    logits = ensemble.rank(video, queries, tracks)  # (B, T, N, C)
    selected, visible = ensemble.select(video, queries, tracks, visibility, gt_tracks=tracks[:, 0])
    best = logits.argmax(-1)
    assert logits.shape == (1, 5, 4, 3) and len(best.unique()) > 1  # the choice varies over points and frames
    for t in range(5):
        for n in range(4):
            assert torch.equal(selected[0, t, n], tracks[0, best[0, t, n], t, n])
    assert visible.dtype == torch.bool and visible.shape == (1, 5, 4)


def test_equal_scores_choose_the_first_candidate(ensemble):
    video, queries, tracks, visibility = _candidates(count=1)
    duplicated = tracks.expand(-1, 3, -1, -1, -1).clone()
    assert torch.equal(ensemble.choose(video, queries, duplicated), torch.zeros(1, 5, 4, dtype=torch.long))


def test_majority_vote_is_strict():
    votes = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool).T  # (C=4, 3 cases)
    assert majority_visibility(votes.view(1, 4, 1, 3)).flatten().tolist() == [False, True, False]
    three = torch.tensor([1, 1, 0], dtype=torch.bool).view(1, 3, 1, 1)
    assert majority_visibility(three).item()


def test_ensemble_from_a_checkpoint_file(tmp_path, ensemble):
    torch.save({"model": ensemble.verifier.state_dict()}, tmp_path / "v.pt")
    loaded = VerifierEnsemble(tmp_path / "v.pt", config=tiny_verifier_config())
    video, queries, tracks, _ = _candidates()
    assert torch.equal(loaded.rank(video, queries, tracks), ensemble.rank(video, queries, tracks))


@pytest.fixture(scope="module")
def trackers() -> dict[str, Predictor]:
    out = {}
    for seed, name in enumerate(["first", "second"]):
        torch.manual_seed(seed)
        out[name] = Predictor(tiny_config(), support_grid_size=2)
    return out


def test_ensemble_tracker_is_a_tracker(trackers, ensemble):
    video, queries, _, _ = _candidates()
    combined = EnsembleTracker(trackers, ensemble)
    result = combined.track(video, queries)
    candidates = [trackers[name](video, queries) for name in ("first", "second")]
    candidate_tracks = torch.stack([c[0] for c in candidates], dim=1)
    candidate_visibility = torch.stack([c[1] for c in candidates], dim=1)
    assert result.candidate_names == ["first", "second"]
    assert torch.equal(result.candidate_tracks, candidate_tracks)
    expected = ensemble.select(video, queries, candidate_tracks, candidate_visibility)
    tracks, visibility = combined(video, queries)
    assert torch.equal(tracks, expected[0]) and torch.equal(visibility, expected[1])
    assert tracks.shape == (1, 5, 4, 2) and visibility.dtype == torch.bool
    probability = result.choice_probability
    assert probability.shape == (1, 5, 4) and bool(((probability >= 0.5) & (probability <= 1)).all())


def test_a_tracker_predicting_nan_is_left_out(trackers, ensemble):
    video, queries, _, _ = _candidates()

    def broken(video, queries):
        tracks, visibility = trackers["first"](video, queries)
        return tracks * float("nan"), visibility

    combined = EnsembleTracker({"broken": broken, "second": trackers["second"]}, ensemble)
    with pytest.warns(RuntimeWarning, match="broken predicted NaN"):
        result = combined.track(video, queries)
    assert result.candidate_names == ["second"]
    assert torch.equal(result.tracks, trackers["second"](video, queries)[0])
