"""Interactive Track-On2 in the browser: click points on a video and track them, or track your webcam live.

    pip install -r requirements-app.txt
    python app.py                                   # http://127.0.0.1:7860, released DINOv3 weights
    python app.py --checkpoint trackon2-dinov2 --port 8080   # or track-on-r, or a checkpoint file with --config
    python app.py --ensemble trackon2-dinov2,track-on-r --verifier verifier   # Video tab: the verifier ensemble
    python app.py --live_onnx_dir exported/tiny     # Live tab: a graph exported by python -m export.onnx (ONNX Runtime)

The model options are those of demo.py; ``--checkpoint none`` with a config holding ``backbone_config`` runs
random weights (what the tests use). With ``--ensemble`` the Video tab tracks with the verifier ensemble of the
listed trackers and the Live tab with the first of them. Only this machine can reach the page unless
``--host 0.0.0.0`` is given.
"""

from __future__ import annotations

import argparse
import logging
import sys

from trackon2.evaluation.device import parse_device
from trackon2.export.backends import BackendError
from trackon2.export.runtime import ExportFormatError
from trackon2.export.torch_facade import OnnxPredictor
from trackon2.model.checkpoint import CheckpointError
from trackon2.model.vit import BackboneUnavailableError
from trackon2.model.yaml_schema import ConfigError
from trackon2.utils.ensemble_options import add_ensemble_arguments, build_ensemble_tracker, check_ensemble_arguments
from trackon2.utils.model_options import add_model_arguments, autocast_for, build_predictor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser("Track-On2 app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max_frames", type=int, default=300, help="frames of an uploaded video that are used")
    parser.add_argument("--live_onnx_dir", default=None,
                        help="the Live tab tracks with the graph python -m export.onnx wrote here (ONNX Runtime)")
    add_ensemble_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.max_frames < 1:
        print(f"error: --max_frames must be at least 1, got {args.max_frames}", file=sys.stderr)
        return 1
    if args.support_grid_size < 0:
        print(f"error: --support_grid_size must be 0 (no support points) or more, got {args.support_grid_size}",
              file=sys.stderr)
        return 1
    problem = check_ensemble_arguments(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        args.device = str(parse_device(args.device))
    except ValueError as err:
        print(f"error: --device: {err}", file=sys.stderr)
        return 1
    try:
        from trackon2.webapp.ui import build_app
    except ModuleNotFoundError as err:
        if err.name != "gradio":
            raise
        print("error: the app needs Gradio: pip install -r requirements-app.txt", file=sys.stderr)
        return 1

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ensemble = None
    try:
        if args.ensemble is not None:
            ensemble = build_ensemble_tracker(args)
            predictor = next(iter(ensemble.trackers.values()))
        else:
            predictor = build_predictor(args)
        live_predictor = (None if args.live_onnx_dir is None else
                          OnnxPredictor.on_torch_device(args.live_onnx_dir, args.device, args.support_grid_size))
    except (ConfigError, CheckpointError, BackboneUnavailableError, ExportFormatError, BackendError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    page = build_app(predictor, lambda: autocast_for(args), max_frames=args.max_frames, ensemble=ensemble,
                     live_predictor=live_predictor)
    page.queue().launch(server_name=args.host, server_port=args.port, ssr_mode=False, show_error=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
