"""ONNX Runtime sessions for an exported step graph, on the CPU or on CUDA / TensorRT execution providers. No
PyTorch.

OpenVINO is not offered: version 2026.4.1's CPU plugin computes this graph wrongly (points tens of pixels off
from ONNX Runtime and PyTorch, which agree to 1e-5 px), see the README's export section.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# ONNX Runtime execution providers by the short names the runtime takes, fastest first where several are listed.
ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class BackendError(RuntimeError):
    """An execution provider that is not installed or not available here."""


class OrtSession:
    """An ONNX Runtime session on the execution providers of ``device`` ('cpu', 'cuda' or 'tensorrt')."""

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendError('the onnxruntime backend needs the onnxruntime package: pip install "trackon2[export]" '
                               "(in a clone: pip install -r requirements-export.txt)") from err
        if device not in ORT_PROVIDERS:
            raise BackendError(f"unknown onnxruntime device {device!r}; expected one of {', '.join(ORT_PROVIDERS)}")
        wanted = ORT_PROVIDERS[device]
        if wanted[0] not in ort.get_available_providers():
            raise BackendError(f"onnxruntime here has no {wanted[0]} (available: "
                               f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu for "
                               "cuda / tensorrt, or use device 'cpu'")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the optimiser's notes on unfoldable nodes are noise
        self.session = ort.InferenceSession(str(path), options, providers=wanted)
        self.output_names = [output.name for output in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs by name for numpy inputs by name."""
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def metadata(self) -> dict[str, str]:
        """The graph's metadata entries (the exporter records the format version there)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def input_shapes(self) -> dict[str, list]:
        """Each graph input's shape: ints for fixed axes, names for dynamic ones."""
        return {item.name: list(item.shape) for item in self.session.get_inputs()}
