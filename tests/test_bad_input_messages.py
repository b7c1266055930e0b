"""Bad input through demo.py, the Predictor, configs, checkpoints and the evaluation CLI: one clear line each, no
silent wrong result, and nothing already tracked is lost."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import yaml

from tests.tiny_model import TINY_DINOV2, tiny_config
from trackon2 import demo
from trackon2.evaluation.eval import main as eval_main
from trackon2.model.checkpoint import CheckpointError
from trackon2.model.inputs import InputError
from trackon2.model.trackon_predictor import Predictor
from trackon2.model.yaml_schema import ConfigError, config_from_mapping
from trackon2.utils import model_options
from trackon2.video.files import write_video


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad_input")
    (root / "tiny.yaml").write_text(yaml.safe_dump(vars(tiny_config())))
    torch.manual_seed(0)
    torch.save({"model": Predictor(tiny_config(M_i=4)).model.state_dict()}, root / "tiny.pt")
    rng = np.random.default_rng(0)
    write_video(root / "clip.mp4", [rng.integers(0, 255, (72, 96, 3), dtype=np.uint8) for _ in range(4)], 8)
    return {"root": root, "argv": ["--config", str(root / "tiny.yaml"), "--checkpoint", str(root / "tiny.pt"),
                                   "--video", str(root / "clip.mp4"), "--support_grid_size", "2"]}


def _demo(files, tmp_path, *extra: str) -> int:
    return demo.main([*files["argv"], "--output_dir", str(tmp_path / "out"), "--no_video", *extra])


def _one_error_line(capsys) -> str:
    """The one line that reports the error (argparse's usage lines and progress bars aside)."""
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "error: " in line]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------- demo arguments
@pytest.mark.parametrize("extra, message", [
    (["--grid_size", "0"], "--grid_size must be at least 1, got 0"),
    (["--grid_size", "-3"], "--grid_size must be at least 1, got -3"),
    (["--support_grid_size", "-1"], "--support_grid_size must be 0 (no support points) or more, got -1"),
    (["--device", "banana"], "--device: "),
    (["--device", "cuda:0"], "--device: CUDA is not available"),
    (["--max_frames", "0"], "--max_frames must be at least 1"),
])
def test_demo_rejects_unusable_arguments(files, tmp_path, capsys, extra, message):
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has a GPU, so --device cuda is usable")
    with pytest.raises(SystemExit) as excinfo:
        _demo(files, tmp_path, *extra)
    assert excinfo.value.code == 2
    assert message in _one_error_line(capsys).split("error: ", 1)[1]


def test_demo_output_path_that_is_a_file(files, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(SystemExit):
        demo.main([*files["argv"], "--output_dir", str(tmp_path / "taken")])
    assert f"--output_dir {tmp_path / 'taken'}: {tmp_path / 'taken'} is a file, not a folder" in _one_error_line(capsys)


@pytest.mark.parametrize("queries, message", [
    ({"t": 0, "x": 1, "y": 2}, "must hold a non-empty JSON list of [t, x, y] triples"),
    ([], "must hold a non-empty JSON list"),
    ([[0, "a", 1]], "must hold a non-empty JSON list"),
    ([[0, 1]], "must hold a non-empty JSON list"),
    ([[-1, 10, 10]], "start frames must be non-negative integers, got [-1.0]"),
    ([[1.5, 10, 10]], "start frames must be non-negative integers, got [1.5]"),
])
def test_demo_rejects_bad_query_files(files, tmp_path, capsys, queries, message):
    (tmp_path / "q.json").write_text(json.dumps(queries))
    assert _demo(files, tmp_path, "--queries_json", str(tmp_path / "q.json")) == 1
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "out" / "tracks.npz").exists()


@pytest.mark.slow
def test_demo_query_after_the_last_frame_is_an_error_but_the_others_are_saved(files, tmp_path, capsys):
    (tmp_path / "q.json").write_text(json.dumps([[0, 10, 10], [1, 20, 20], [9, 30, 30]]))
    assert _demo(files, tmp_path, "--queries_json", str(tmp_path / "q.json")) == 1
    err = _one_error_line(capsys)
    assert "1 query point(s) start at frame(s) [9], after the last tracked frame" in err and "(4 frame(s)" in err
    assert "the tracks of the other queries are saved" in err
    saved = np.load(tmp_path / "out" / "tracks.npz")
    assert saved["tracks"].shape == (4, 3, 2) and np.any(saved["tracks"][1:, 1] != 0)
    assert _demo(files, tmp_path, "--queries_json", str(tmp_path / "q.json"), "--max_frames", "2") == 1
    assert "after the last tracked frame of --max_frames 2" in _one_error_line(capsys)


def test_demo_unknown_checkpoint_name_lists_the_known_ones(files, tmp_path, capsys):
    argv = [*files["argv"], "--output_dir", str(tmp_path / "out")]
    argv[argv.index("--checkpoint") + 1] = "dinov4"
    assert demo.main(argv) == 1
    assert "checkpoint not found: dinov4 (--checkpoint takes a checkpoint file, or the name of released weights " \
           "from the Hugging Face hub (trackon2-dinov2, trackon2-dinov3, track-on-r, dinov2, dinov3))" \
           in _one_error_line(capsys)


def test_demo_offline_default_checkpoint_names_the_flag(files, tmp_path, capsys, monkeypatch):
    def offline(family):
        raise CheckpointError(f"could not fetch trackon2_{family}_checkpoint.pt from the hub (offline)")

    monkeypatch.setattr(model_options, "download_released_checkpoint", offline)
    argv = [*files["argv"], "--output_dir", str(tmp_path / "out")]
    del argv[argv.index("--checkpoint"):argv.index("--checkpoint") + 2]
    assert demo.main(argv) == 1
    err = _one_error_line(capsys)
    assert "the default released trackon2-dinov2 weights; give a checkpoint file with --checkpoint FILE" in err


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"", b"\x00" * 5000])
def test_demo_undecodable_video_is_one_line(files, tmp_path, capsys, content):
    (tmp_path / "bad.mp4").write_bytes(content)
    assert _demo(files, tmp_path, "--video", str(tmp_path / "bad.mp4")) == 1
    err = _one_error_line(capsys)
    assert f"no frames could be decoded from {tmp_path / 'bad.mp4'}" in err and "ffmpeg version" not in err


# ------------------------------------------------------------------------------------------------- checkpoints
def test_text_file_as_checkpoint(files, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("these are not weights\n" * 50)
    argv = [*files["argv"], "--output_dir", str(tmp_path / "out")]
    argv[argv.index("--checkpoint") + 1] = str(tmp_path / "notes.txt")
    assert demo.main(argv) == 1
    err = _one_error_line(capsys)
    assert f"could not read checkpoint {tmp_path / 'notes.txt'}: not a PyTorch checkpoint" in err
    assert len(err) < 400


def test_nan_weights_are_refused(tmp_path):
    state = Predictor(tiny_config(M_i=4)).model.state_dict()
    name = next(k for k in state if k.startswith("fpn.") and k.endswith("weight"))
    state[name] = state[name].clone()
    state[name][0] = float("nan")
    torch.save(state, tmp_path / "diverged.pt")
    with pytest.raises(CheckpointError, match=r"holds NaN or infinite weights in 1 tensor\(s\), e\.g\. \['fpn\."):
        Predictor(tiny_config(M_i=4), checkpoint_path=tmp_path / "diverged.pt")


# ------------------------------------------------------------------------------------------------- Predictor
@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(tiny_config(), support_grid_size=0)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_pixels_are_refused(predictor, value):
    video = torch.rand(1, 3, 3, 64, 96) * 255
    video[0, 1, 0, 5, 5] = value
    with pytest.raises(InputError, match=r"video contains 1 NaN or infinite pixel value\(s\)"):
        predictor(video, torch.tensor([[[0, 10.0, 10.0]]]))
    predictor.reset()
    predictor.forward_frame(torch.rand(3, 64, 96) * 255)
    with pytest.raises(InputError, match="NaN or infinite"):
        predictor.forward_frame(video[0, 1])


def test_a_video_in_0_to_1_gets_a_warning(predictor):
    video = torch.rand(1, 2, 3, 64, 96)
    with pytest.warns(UserWarning, match=r"values all lie in \[0, 1\], but the tracker expects 0\.\.255"):
        predictor(video, torch.tensor([[[0, 10.0, 10.0]]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictor(video * 255, torch.tensor([[[0, 10.0, 10.0]]]))
    predictor.reset()
    with pytest.warns(UserWarning, match="frame values all lie in"):
        predictor.forward_frame(video[0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per stream
        predictor.forward_frame(video[0, 1])


def test_empty_stream_queries_name_the_stream_format(predictor):
    predictor.reset()
    with pytest.raises(InputError, match=r"new_queries is empty: give at least one \(x, y\) point, or None"):
        predictor.forward_frame(torch.rand(3, 64, 96) * 255, torch.zeros(0, 2))


# ----------------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("change, message", [
    ({"K": 0}, "'K' must be at least 1, got 0"),
    ({"D": 30}, "'D' (30) must be divisible by 4, the number of attention heads"),
    ({"M_i": 0}, "'M_i' must be at least 1"),
    ({"delta_v": 1.5}, "'delta_v' is a visibility probability threshold in [0, 1]"),
    ({"backbone_config": {**TINY_DINOV2, "num_hiden_layers": 2}},
     "unknown backbone_config key(s) 'num_hiden_layers' (did you mean 'num_hidden_layers'?)"),
    ({"backbone_config": {**TINY_DINOV2, "model_type": "dinov9"}},
     "backbone_config model_type 'dinov9' does not fit vit_backbone 'dinov2_s' (expected 'dinov2')"),
])
def test_config_values_that_cannot_work(change, message):
    with pytest.raises(ConfigError) as excinfo:
        config_from_mapping({**vars(tiny_config()), **change})
    assert message in str(excinfo.value) and len(str(excinfo.value)) < 300


# ------------------------------------------------------------------------------------------------- evaluation
def test_davis_path_that_is_a_folder(files, tmp_path, capsys):
    (tmp_path / "davis").mkdir()
    code = eval_main(["--model_config_path", str(files["root"] / "tiny.yaml"), "--dataset_name", "davis",
                      "--dataset_path", str(tmp_path / "davis"), "--model_checkpoint_path",
                      str(files["root"] / "tiny.pt"), "--device", "cpu"])
    assert code == 2
    err = _one_error_line(capsys)
    assert "TAP-Vid davis is one pickle file (such as tapvid_davis.pkl), but this is a folder" in err
    assert "does not exist" not in err
