"""The web app's Video tab with the verifier ensemble (tiny random-weight trackers and verifier, no browser)."""

from __future__ import annotations

import contextlib
import csv

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("gradio", reason="gradio is not installed: pip install -r requirements-app.txt")

from tests.tiny_model import tiny_config  # noqa: E402
from tests.tiny_verifier import tiny_verifier_config  # noqa: E402
from trackon2.model.trackon_predictor import Predictor  # noqa: E402
from trackon2.model.verifier import Verifier  # noqa: E402
from trackon2.model.verifier.ensemble import VerifierEnsemble  # noqa: E402
from trackon2.model.verifier.ensemble_tracker import EnsembleTracker  # noqa: E402
from trackon2.webapp.clip import Clip  # noqa: E402
from trackon2.webapp.ui import App  # noqa: E402


@pytest.fixture(scope="module")
def ensemble() -> EnsembleTracker:
    trackers = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        trackers[f"tiny{seed}"] = Predictor(tiny_config(), support_grid_size=2)
    torch.manual_seed(2)
    return EnsembleTracker(trackers, VerifierEnsemble(Verifier(tiny_verifier_config())))


def _clip() -> Clip:
    rng = np.random.default_rng(0)
    clip = Clip("clip", [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(5)], fps=8.0)
    clip.add_point(2, 10.0, 20.0)
    clip.add_point(0, 40.0, 30.0)
    return clip


def test_video_tab_tracks_with_the_ensemble(tmp_path, ensemble):
    app = App(ensemble.trackers["tiny0"], contextlib.nullcontext, max_frames=10, work_dir=tmp_path, ensemble=ensemble)
    overlay, downloads, status, _, _ = app.track(_clip())
    assert "verifier ensemble of tiny0, tiny1" in status
    saved = np.load(downloads[0])
    assert saved["tracks"].shape == (5, 2, 2) and saved["candidate_tracks"].shape == (2, 5, 2, 2)
    assert saved["candidates"].tolist() == ["tiny0", "tiny1"]
    assert saved["tracks"][2, 0].tolist() == [10.0, 20.0] and not saved["visibility"][:2, 0].any()
    later = saved["chosen"][3:, 0]
    assert np.array_equal(saved["tracks"][3:, 0], saved["candidate_tracks"][later, 3 + np.arange(2), 0])
    assert ((saved["confidence"] >= 0.5) & (saved["confidence"] <= 1)).all()
    rows = list(csv.DictReader(open(downloads[2])))
    assert len(rows) == 3 + 5 and float(rows[0]["x"]) == 10.0
    assert (tmp_path.glob("*/overlay.mp4").__next__()).stat().st_size > 0 and overlay.endswith("overlay.mp4")


def test_app_ensemble_options(tmp_path, capsys):
    from trackon2 import app
    from trackon2.utils.ensemble_options import build_ensemble_tracker

    assert app.main(["--ensemble", "trackon2-dinov2"]) == 1
    assert "at least two trackers" in capsys.readouterr().err
    assert app.main(["--ensemble", "a.pt,b.pt", "--checkpoint", "none"]) == 1
    assert "without --checkpoint" in capsys.readouterr().err
    for name in ("tiny.yaml", "tiny2.yaml"):
        (tmp_path / name).write_text(yaml.safe_dump(vars(tiny_config())))
    (tmp_path / "verifier.yaml").write_text(yaml.safe_dump(tiny_verifier_config().to_dict()))
    specs = [f"{tmp_path / 'tiny.yaml'}:none", f"{tmp_path / 'tiny2.yaml'}:none"]
    args = app.parse_args(["--ensemble", ",".join(specs), "--verifier", "none",
                           "--verifier_config", str(tmp_path / "verifier.yaml"), "--device", "cpu"])
    combined = build_ensemble_tracker(args)
    assert list(combined.trackers) == specs and combined.ensemble.verifier.config == tiny_verifier_config()
    assert all(isinstance(tracker, Predictor) for tracker in combined.trackers.values())
