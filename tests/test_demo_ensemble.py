"""demo.py with --ensemble: two tiny random-weight Track-On2 models and a tiny verifier, no network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from tests.tiny_model import tiny_config
from tests.tiny_verifier import tiny_verifier_config
from trackon2 import demo
from trackon2.model.trackon_predictor import Predictor
from trackon2.model.verifier import Verifier
from trackon2.model.verifier.ensemble import VerifierEnsemble
from trackon2.model.verifier.ensemble_tracker import EnsembleTracker
from trackon2.video.files import iter_video_frames, write_video


def _setup(tmp_path) -> list[str]:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(vars(tiny_config())))
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save({"model": Predictor(tiny_config(M_i=4)).model.state_dict()}, tmp_path / f"tiny{seed}.pt")
    (tmp_path / "verifier.yaml").write_text(yaml.safe_dump(tiny_verifier_config().to_dict()))
    torch.manual_seed(2)
    torch.save(Verifier(tiny_verifier_config()).state_dict(), tmp_path / "verifier.pt")
    rng = np.random.default_rng(0)
    write_video(tmp_path / "clip.mp4", [rng.integers(0, 255, (72, 96, 3), dtype=np.uint8) for _ in range(5)], 8)
    tiny = tmp_path / "tiny.yaml"
    return ["--ensemble", f"{tiny}:{tmp_path / 'tiny0.pt'},{tiny}:{tmp_path / 'tiny1.pt'}",
            "--verifier", str(tmp_path / "verifier.pt"), "--verifier_config", str(tmp_path / "verifier.yaml"),
            "--video", str(tmp_path / "clip.mp4"), "--output_dir", str(tmp_path / "out"), "--support_grid_size", "2",
            "--grid_size", "3"]


def test_demo_runs_the_verifier_ensemble(tmp_path):
    args = _setup(tmp_path)
    assert demo.main(args) == 0
    saved = np.load(tmp_path / "out" / "tracks.npz")
    assert saved["tracks"].shape == (5, 9, 2) and saved["candidate_tracks"].shape == (2, 5, 9, 2)
    assert saved["candidates"].tolist() == args[1].split(",")
    assert (tmp_path / "out" / "overlay.mp4").stat().st_size > 0
    # The same as the Python API on the decoded frames.
    trackers = {spec: Predictor(tiny_config(), checkpoint_path=spec.split(":")[1], support_grid_size=2)
                for spec in args[1].split(",")}
    verifier = Verifier(tiny_verifier_config())
    verifier.load_state_dict(torch.load(tmp_path / "verifier.pt"))
    video = torch.from_numpy(np.stack(list(iter_video_frames(tmp_path / "clip.mp4")))).permute(0, 3, 1, 2)[None]
    tracks, visibility = EnsembleTracker(trackers, VerifierEnsemble(verifier))(video.float(),
                                                                               torch.from_numpy(saved["queries"])[None])
    assert np.allclose(saved["tracks"], tracks[0].numpy()) and np.array_equal(saved["visibility"], visibility[0])
    chosen = saved["chosen"]
    picked = np.take_along_axis(saved["candidate_tracks"], chosen[None, ..., None], axis=0)[0]
    assert np.array_equal(picked, saved["tracks"])


@pytest.mark.parametrize("change, message", [
    (["--ensemble", "trackon2-dinov2"], "at least two trackers"),
    (["--ensemble", "trackon2-dinov2,trackon2-dinov2"], "more than once"),
    (["--checkpoint", "track-on-r"], "without --checkpoint"),
    (["--video", "0"], "not for live sources"),
])
def test_bad_ensemble_options_are_one_line(tmp_path, capsys, change, message):
    args = _setup(tmp_path)
    flag = change[0]
    args = args[:args.index(flag)] + change + args[args.index(flag) + 2:] if flag in args else args + change
    with pytest.raises(SystemExit):
        demo.main(args)
    assert message in capsys.readouterr().err


def test_a_missing_tracker_checkpoint_is_reported_before_any_work(tmp_path, capsys):
    args = _setup(tmp_path)
    args[1] = args[1].replace("tiny1.pt", "absent.pt")
    assert demo.main(args) == 1
    err = capsys.readouterr().err
    assert "absent.pt" in err and "checkpoint not found" in err
    assert not (tmp_path / "out" / "tracks.npz").exists()
