"""Export Track-On2's online frame step to ONNX, with a JSON beside it that a runtime needs nothing else with.

    python -m export.onnx --checkpoint trackon2-dinov2 --num_queries 256 --memory_size 72 --height 384 \\
        --width 512 --out exported/trackon2-dinov2
    python -m export.onnx --checkpoint none --config config/tiny.yaml --num_queries 8 --memory_size 6 \\
        --height 64 --width 96 --out exported/tiny          # the random-weight tiny model, for a quick look

The folder gets ``step.onnx`` (one frame step: encode the frame, start the queries flagged ``starting``, track
every ``active`` query slot, write their memories; the whole tracker state goes in and comes out as named
tensors) and ``trackon2_onnx.json`` (variant, sizes, opset, state layout, frame normalisation). The graph takes
frames of any size and any number of query slots (the runtime allows num_queries user queries plus the support
grid). --height / --width are the model's input size: the released models take only 384x512, random weights
(``--checkpoint none``) any multiple of 32. Run the graphs with ``export.runtime.OnnxTracker`` (numpy and
onnxruntime; no PyTorch).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from trackon2.export.layout import (
    FORMAT,
    FORMAT_VERSION,
    INPUT_DOC,
    INPUT_NAMES,
    MANIFEST_NAME,
    METADATA_KEY,
    OUTPUT_NAMES,
    STATE,
    STEP_GRAPH_NAME,
    tensor_layout,
)
from trackon2.export.step import OnlineStep
from trackon2.model.backbone import IMAGENET_MEAN, IMAGENET_STD
from trackon2.model.checkpoint import CheckpointError, extract_state_dict, read_checkpoint
from trackon2.model.config import ModelConfig
from trackon2.model.heads import STRIDE
from trackon2.model.vit import BackboneUnavailableError
from trackon2.model.yaml_schema import ConfigError
from trackon2.runtime.predictor import SUPPORT_GRID_SIZE, Predictor
from trackon2.utils.model_options import CHECKPOINT_HELP, load_model_options

SIZE_MULTIPLE = 32  # the coarsest feature level has stride 32
MIN_OPSET = 18  # the exporter's lowest opset (GridSample needs 16, TopK with largest/sorted 11)
MAX_FRAME_SIDE = 8192
EXPORT_PACKAGES = ("onnx", "onnxscript")  # the exporter's own (onnxruntime is the runtime's)
INSTALL_HINT = 'pip install "trackon2[export]" (in a clone: pip install -r requirements-export.txt)'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser("python -m export.onnx", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help=f"{CHECKPOINT_HELP}, or 'none' for random weights")
    parser.add_argument("--config", default=None, help="model config (YAML) (default: the variant's own)")
    parser.add_argument("--num_queries", type=int, required=True,
                        help="user queries the runtime may track at once (the support grid comes on top)")
    parser.add_argument("--memory_size", type=int, default=None, help="inference memory M_i (default: the config's)")
    parser.add_argument("--height", type=int, default=None, help="model input height (default: the config's)")
    parser.add_argument("--width", type=int, default=None, help="model input width (default: the config's)")
    parser.add_argument("--support_grid_size", type=int, default=SUPPORT_GRID_SIZE,
                        help="the runtime adds a support_grid_size^2 grid of queries on the first frame")
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (at least {MIN_OPSET})")
    parser.add_argument("--out", required=True, help="folder to write the graph and its JSON into")
    args = parser.parse_args(argv)
    problem = check_arguments(args)
    if problem:
        parser.error(problem)
    return args


def check_arguments(args: argparse.Namespace) -> str | None:
    """The first argument that cannot be exported, as one line (None when all can)."""
    if args.num_queries < 1:
        return f"--num_queries must be at least 1, got {args.num_queries}"
    if args.memory_size is not None and args.memory_size < 1:
        return f"--memory_size must be at least 1, got {args.memory_size}"
    if args.support_grid_size < 0:
        return f"--support_grid_size must be 0 (none) or more, got {args.support_grid_size}"
    if args.opset < MIN_OPSET:
        return f"--opset must be at least {MIN_OPSET} (the exporter's lowest), got {args.opset}"
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and (value < SIZE_MULTIPLE or value % SIZE_MULTIPLE):
            return (f"--{name} {value}: the model takes input sides that are positive multiples of "
                    f"{SIZE_MULTIPLE} (its coarsest features have stride {SIZE_MULTIPLE}), e.g. "
                    f"{max(SIZE_MULTIPLE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file, not a folder"
    return None


def export_config(args: argparse.Namespace) -> tuple[ModelConfig, Path | None]:
    """The model configuration at the requested input and memory sizes, and the checkpoint file (None: random)."""
    config, checkpoint = load_model_options(args.checkpoint, args.config)
    model_config = ModelConfig.from_namespace(config)
    height, width = model_config.input_size
    model_config = model_config.replace(input_size=(args.height or height, args.width or width),
                                        M_i=args.memory_size or model_config.M_i)
    if checkpoint is not None:
        check_checkpoint_size(checkpoint, model_config)
    return model_config, checkpoint


def check_checkpoint_size(checkpoint: Path, config: ModelConfig) -> None:
    """A checkpoint's learned position map fixes the input size it can take: say so in one line if it is not
    the requested one (other mismatches are reported by the strict loader)."""
    position = extract_state_dict(read_checkpoint(checkpoint)).get("backbone.pos_embedding")
    height, width = config.input_size
    if position is None or position.dim() != 4:
        return
    trained = (int(position.shape[2]) * STRIDE, int(position.shape[3]) * STRIDE)
    if trained != (height, width):
        raise CheckpointError(f"{checkpoint} takes {trained[0]}x{trained[1]} inputs only (its learned position "
                              f"map is {position.shape[2]}x{position.shape[3]} patches), not {height}x{width}: "
                              f"export with --height {trained[0]} --width {trained[1]}")


def build_step(config: ModelConfig, checkpoint: Path | None) -> OnlineStep:
    """The plain (not ``runtime.fast``) model with its checkpoint, loaded strictly, in eval mode."""
    predictor = Predictor(config, checkpoint_path=checkpoint, support_grid_size=0, fast=False)
    return OnlineStep(predictor.model).eval()


def export_step(step: OnlineStep, path: Path, slots: int, memory_size: int, opset: int) -> None:
    """Trace the step with ``torch.onnx.export`` (the dynamo exporter; traced with ``slots`` query slots, the
    graph takes any number) and write it to ``path``."""
    height = torch.export.Dim("frame_height", min=2, max=MAX_FRAME_SIDE)
    width = torch.export.Dim("frame_width", min=2, max=MAX_FRAME_SIDE)
    query_axes: dict[int, Any] = {1: torch.export.Dim("num_slots", min=1)}
    shapes: dict[str, dict[int, Any] | None] = {name: query_axes for name in INPUT_NAMES}
    shapes["frame"] = {2: height, 3: width}
    shapes["frame_index"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(step, step.example_inputs(slots, memory_size), str(path), input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), dynamic_shapes=shapes, opset_version=opset,
                          dynamo=True, external_data=False, verbose=False)


def finish_graph(path: Path) -> None:
    """Record the format version in the graph's metadata and check the graph with ``onnx.checker``."""
    import onnx

    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, str(FORMAT_VERSION)
    onnx.save(graph, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def manifest(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    """The JSON written beside the graph: everything a runtime needs, with no reference to this repository."""
    height, width = config.input_size
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "variant": args.checkpoint,
        "config": args.config,
        "graphs": {"step": STEP_GRAPH_NAME},
        "opset": args.opset,
        "input_size": [height, width],
        "feature_dim": config.D,
        "memory_size": config.M_i,
        "num_queries": args.num_queries,
        "support_grid_size": args.support_grid_size,
        "delta_v": float(config.delta_v),
        "normalisation": {"scale": 1 / 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                          "resize": "bilinear, half-pixel centres, no antialiasing, to input_size",
                          "layout": "RGB, channels first, float32 0..255"},
        "state": list(STATE),
        "tensors": {name: {**entry, "doc": INPUT_DOC.get(name, "")}
                    for name, entry in tensor_layout(config.D, config.M_i).items()},
    }


def missing_export_packages() -> list[str]:
    """The packages the export needs that are not installed (checked before the minute-long model build)."""
    return [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_export_packages()
    if missing:
        print(f"error: the ONNX export needs {' and '.join(missing)}: {INSTALL_HINT}", file=sys.stderr)
        return 1
    try:
        config, checkpoint = export_config(args)
        step = build_step(config, checkpoint)
    except (ConfigError, CheckpointError, BackboneUnavailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    support = args.support_grid_size ** 2
    slots = args.num_queries + support
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"exporting the step of {args.checkpoint} at {config.input_size[0]}x{config.input_size[1]}, M_i "
          f"{config.M_i}, {args.num_queries} queries + {support} support to {out}/ (takes a minute)", file=sys.stderr)
    export_step(step, out / STEP_GRAPH_NAME, slots, config.M_i, args.opset)
    finish_graph(out / STEP_GRAPH_NAME)
    (out / MANIFEST_NAME).write_text(json.dumps(manifest(args, config), indent=2))
    print(f"wrote {out / STEP_GRAPH_NAME} and {out / MANIFEST_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
