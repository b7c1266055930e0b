"""What an export folder holds, shared by the exporter and the torch-free runtime: file names, the format
version, and the description of the step graph's inputs, outputs and state written into ``trackon2_onnx.json``.

The JSON is all a runtime needs besides the graph: the sizes, the state layout (which output feeds which input
on the next frame, and each state tensor's initial value), the frame normalisation and the visibility threshold.
"""

from __future__ import annotations

from typing import Any

FORMAT = "trackon2-onnx"
FORMAT_VERSION = 1  # bumped whenever the graph's inputs, outputs or their meaning change
METADATA_KEY = "trackon2_onnx_format_version"  # the same number, also stored in the ONNX graph's metadata
MANIFEST_NAME = "trackon2_onnx.json"
STEP_GRAPH_NAME = "step.onnx"

INPUT_NAMES = ("frame", "coords", "starting", "active", "q_init", "memory", "memory_empty", "frame_index")
OUTPUT_NAMES = ("points", "visibility", "confidence", "q_init_out", "memory_out", "memory_empty_out",
                "frame_index_out")

# Each state tensor: its input name, the output that carries it to the next frame, its initial value for a new
# query slot, and its dtype.
STATE = (
    {"input": "q_init", "output": "q_init_out", "initial": 0, "dtype": "float32"},
    {"input": "memory", "output": "memory_out", "initial": 0, "dtype": "float32"},
    {"input": "memory_empty", "output": "memory_empty_out", "initial": True, "dtype": "bool"},
    {"input": "frame_index", "output": "frame_index_out", "initial": 0, "dtype": "int64"},
)


def tensor_layout(dim: int, memory_size: int) -> dict[str, dict[str, Any]]:
    """Shape and dtype of every graph input and output; "num_slots" (any number of query slots) and the frame's
    sides are dynamic."""
    slots = "num_slots"
    frame = [1, 3, "frame_height", "frame_width"]
    return {
        "frame": {"shape": frame, "dtype": "float32", "role": "input"},
        "coords": {"shape": [1, slots, 2], "dtype": "float32", "role": "input"},
        "starting": {"shape": [1, slots], "dtype": "bool", "role": "input"},
        "active": {"shape": [1, slots], "dtype": "bool", "role": "input"},
        "q_init": {"shape": [1, slots, dim], "dtype": "float32", "role": "state"},
        "memory": {"shape": [1, slots, memory_size, dim], "dtype": "float32", "role": "state"},
        "memory_empty": {"shape": [1, slots, memory_size], "dtype": "bool", "role": "state"},
        "frame_index": {"shape": [1], "dtype": "int64", "role": "state"},
        "points": {"shape": [1, slots, 2], "dtype": "float32", "role": "output"},
        "visibility": {"shape": [1, slots], "dtype": "float32", "role": "output"},
        "confidence": {"shape": [1, slots], "dtype": "float32", "role": "output"},
    }


INPUT_DOC = {
    "frame": "the RGB frame, float32 0..255, channels first, any size (the graph resizes it to input_size "
             "bilinearly with half-pixel centres, divides by 255 and normalises with mean / std)",
    "coords": "each slot's query point (x, y) divided by the frame's (width, height)",
    "starting": "True for the slots whose query starts on this frame (sampled from it, memory emptied)",
    "active": "True for the slots that hold a query (started now or earlier); the others are ignored",
    "points": "(x, y) in model-input pixels: multiply by (frame width / input width, frame height / input "
              "height) for frame pixels; zero for inactive slots",
    "visibility": "sigmoid of the visibility logit; visible where >= delta_v",
    "confidence": "sigmoid of minus the uncertainty logit: 1 - P(off by more than 12 px or occluded)",
}
