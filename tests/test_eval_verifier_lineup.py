"""The verifier as an evaluation entry: it chooses among the trackers listed before it, end to end on synthetic
EgoPoints with two tiny Track-On2 models and a tiny random-weight verifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.tiny_model import tiny_config
from tests.tiny_verifier import tiny_verifier_config
from trackon2.dataset.synthetic import write_ego_points
from trackon2.evaluation.eval import main
from trackon2.evaluation.trackers import build_tracker, tracker_names
from trackon2.model.trackon_predictor import Predictor
from trackon2.model.verifier import Verifier, VerifierEnsemble


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verifier_lineup")
    config = vars(tiny_config())
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        torch.save(Predictor(tiny_config(M_i=config["M"]), support_grid_size=0).model.state_dict(), root / f"{name}.pth")
    torch.manual_seed(2)
    torch.save(Verifier(tiny_verifier_config()).state_dict(), root / "verifier.pt")
    (root / "verifier.yaml").write_text(yaml.safe_dump(tiny_verifier_config().to_dict()))
    write_ego_points(root / "ego", 2, seed=3, num_frames=5, height=48, width=64, num_points=6)
    return {"root": root, "config": root / "tiny.yaml", "a": root / "a.pth", "b": root / "b.pth",
            "verifier": root / "verifier.pt", "verifier_config": root / "verifier.yaml", "data": root / "ego"}


def test_the_verifier_is_a_registered_ensemble(setup):
    assert "verifier" in tracker_names(ensembles=True) and "verifier" not in tracker_names(ensembles=False)
    ensemble = build_tracker("verifier", checkpoint=str(setup["verifier"]), config=str(setup["verifier_config"]))
    assert isinstance(ensemble, VerifierEnsemble)


@pytest.mark.slow
def test_a_lineup_with_the_verifier_scores_it_beside_the_candidates(setup):
    output = setup["root"] / "out.json"
    argv = ["--model_names", "a=trackon2", "b=trackon2", "verifier", "oracle",
            "--tracker_options", f"a.checkpoint={setup['a']}", f"a.config={setup['config']}",
            f"b.checkpoint={setup['b']}", f"b.config={setup['config']}",
            f"verifier.checkpoint={setup['verifier']}", f"verifier.config={setup['verifier_config']}",
            "--dataset_name", "ego_points", "--dataset_path", str(setup["data"]), "--device", "cpu",
            "--no_progress", "--output_json", str(output)]
    assert main(argv) == 0
    final = json.loads(output.read_text())["final"]
    assert set(final) == {"a", "b", "verifier", "oracle"}
    key = "old_d_all_avg"
    # The verifier picks one candidate per point and frame; the oracle picks the closest one, so no choice is
    # more often within a threshold than the oracle's.
    assert 0 <= final["verifier"][key] <= final["oracle"][key] + 1e-9


def test_a_missing_verifier_checkpoint_is_one_line_before_any_work(setup, capsys):
    argv = ["--model_names", "a=trackon2", "verifier", "--tracker_options", f"a.checkpoint={setup['a']}",
            f"a.config={setup['config']}", "verifier.checkpoint=/nonexistent/verifier.pt",
            "--dataset_name", "ego_points", "--dataset_path", str(setup["data"]), "--device", "cpu", "--no_progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "verifier: checkpoint file not found: /nonexistent/verifier.pt" in err[0]
