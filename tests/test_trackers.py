"""The tracker registry and the bound ensembles: ``oracle`` picks as the reference's ``compute_oracle_prediction``
(``fixtures/oracle_reference.npz``, made by ``fixtures/make_track_on_r_eval_fixtures.py`` from the reference) and is
never farther from the ground truth than any candidate; ``random`` picks the reference's ``z = j % M``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import trackon2.evaluation.trackers.registry as registry
from trackon2.evaluation.trackers import (
    TrackerRegistryError,
    build_tracker,
    check_tracker,
    ensemble_for_video,
    get_entry,
    register_tracker,
    tracker_names,
)

ORACLE_FIXTURE = Path(__file__).parent / "fixtures" / "oracle_reference.npz"


def _oracle_cases() -> list[dict[str, torch.Tensor]]:
    archive = np.load(ORACLE_FIXTURE)
    names = sorted({key.split("/")[0] for key in archive.files})
    return [{key.split("/")[1]: torch.from_numpy(archive[key]) for key in archive.files if key.startswith(f"{n}/")}
            for n in names]


def test_builtin_entries() -> None:
    assert tracker_names(ensembles=False) == ["trackon2", "trackon2-dinov2", "trackon2-dinov3", "track-on-r"]
    assert tracker_names(ensembles=True) == ["oracle", "random", "verifier"]
    assert get_entry("track-on-r").options == ("checkpoint", "config", "device", "memory_size", "support_grid_size",
                                               "allow_outside_queries", "benchmark")
    assert get_entry("random").options == ("seed",)


def test_unknown_names_and_options_are_one_clear_error() -> None:
    with pytest.raises(TrackerRegistryError, match="unknown tracker 'oracel' \\(did you mean 'oracle'\\?\\)"):
        build_tracker("oracel")
    with pytest.raises(TrackerRegistryError, match="random takes the option\\(s\\) seed; not sed"):
        build_tracker("random", sed=3)
    with pytest.raises(TrackerRegistryError, match="trackon2 needs a checkpoint"):
        check_tracker("trackon2")
    with pytest.raises(TrackerRegistryError, match="checkpoint file not found: /nonexistent.pt"):
        check_tracker("track-on-r", checkpoint="/nonexistent.pt")


def test_a_new_tracker_is_one_registered_factory(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))

    @register_tracker("still", description="every point stays where it was queried")
    def build_still(scale: float = 1.0):
        def track(video, queries):
            frames = video.shape[1]
            tracks = queries[:, None, :, 1:].expand(-1, frames, -1, -1) * scale
            return tracks, torch.ones(tracks.shape[:-1], dtype=torch.bool)
        return track

    assert "still" in tracker_names(ensembles=False)
    tracks, visible = build_tracker("still", scale=2.0)(torch.zeros(1, 3, 3, 8, 8), torch.tensor([[[0.0, 1.0, 2.0]]]))
    assert tracks.shape == (1, 3, 1, 2) and tracks[0, 2, 0].tolist() == [2.0, 4.0] and visible.all()
    with pytest.raises(TrackerRegistryError, match="registered twice"):
        register_tracker("still")(build_still)


@pytest.mark.parametrize("case", _oracle_cases(), ids=lambda c: str(tuple(c["candidate_tracks"].shape)))
def test_oracle_picks_as_the_reference(case) -> None:
    tracks, visible = build_tracker("oracle").select(
        torch.zeros(1), torch.zeros(1), case["candidate_tracks"], case["candidate_visibility"],
        gt_tracks=case["gt_tracks"], gt_visibility=case["gt_visibility"])
    assert torch.equal(tracks, case["tracks"])
    assert torch.equal(visible, case["visibility"] > 0)


def test_oracle_is_never_farther_than_any_candidate() -> None:
    generator = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 7, 11, 2, generator=generator) * 100
    spread = torch.tensor([1.0, 4.0, 9.0, 30.0]).view(1, 4, 1, 1, 1)
    candidates = gt[:, None] + torch.randn(2, 4, 7, 11, 2, generator=generator) * spread
    tracks, _ = build_tracker("oracle").select(None, None, candidates, torch.zeros(2, 4, 7, 11, dtype=torch.bool),
                                               gt, torch.ones(2, 7, 11))
    error = torch.norm(tracks - gt, dim=-1)
    candidate_errors = torch.norm(candidates - gt[:, None], dim=-1)
    assert (error[:, None] <= candidate_errors).all()
    assert torch.equal(error, candidate_errors.min(dim=1).values)
    with pytest.raises(TrackerRegistryError, match="needs the ground-truth"):
        build_tracker("oracle").select(None, None, candidates, torch.zeros(2, 4, 7, 11, dtype=torch.bool))


def test_random_reproduces_the_reference_choice() -> None:
    candidates = torch.arange(3.0).view(1, 3, 1, 1, 1).expand(2, 3, 4, 5, 2).clone()
    visibility = torch.zeros(2, 3, 4, 5, dtype=torch.bool)
    visibility[:, 1] = True
    for seed in (0, 1, 5, 12):
        tracks, visible = build_tracker("random", seed=seed).select(None, None, candidates, visibility)
        assert tracks[:, 0, 0, 0].tolist() == [seed % 3, (seed + 1) % 3]
        assert visible[:, 0, 0].tolist() == [seed % 3 == 1, (seed + 1) % 3 == 1]
    ensemble = build_tracker("random")
    for j in range(7):  # the reference: video j comes from candidate j % M
        tracks, _ = ensemble_for_video(ensemble, j).select(None, None, candidates[:1], visibility[:1])
        assert tracks[0, 0, 0, 0].item() == j % 3
    assert ensemble_for_video(build_tracker("oracle"), 3) is not None
