"""Small, checked readers for the files the datasets are made of (images, pickles, npy/npz).

Every reader turns a low-level failure into a ``DatasetFormatError`` that names the file and the problem, and closes
what it opens so that long data-loading runs do not leak file handles.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from trackon2.dataset.errors import DatasetFormatError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def require_dir(path: str | Path, what: str) -> Path:
    """Return ``path`` as a Path, raising a clear error when it is not an existing folder."""
    path = Path(path)
    if path.is_file():
        raise DatasetFormatError(path, f"this is a file, but a {what} folder is expected here")
    if not path.is_dir():
        raise DatasetFormatError(path, f"{what} folder does not exist")
    return path


def require_file(path: str | Path, what: str) -> Path:
    """Return ``path`` as a Path, raising a clear error when it is not an existing file."""
    path = Path(path)
    if path.is_dir():
        raise DatasetFormatError(path, f"this is a folder, but a {what} file is expected here")
    if not path.is_file():
        raise DatasetFormatError(path, f"{what} file does not exist")
    return path


def list_images(folder: str | Path) -> list[Path]:
    """Image files of ``folder`` sorted by name; an empty or missing folder is an error."""
    folder = require_dir(folder, "frames")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetFormatError(folder, f"no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB."""
    path = require_file(path, "image")
    try:
        with Image.open(path) as image:
            return _to_rgb_array(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetFormatError(path, f"unreadable image ({exc})") from None


def decode_rgb(data: bytes, source: str) -> np.ndarray:
    """Decode encoded image bytes (JPEG/PNG) as uint8 (H, W, 3) RGB; ``source`` names them in errors."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _to_rgb_array(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetFormatError(source, f"undecodable image bytes ({exc})") from None


def load_pickle(path: str | Path) -> Any:
    """Unpickle a file, reporting truncated or foreign files clearly."""
    path = require_file(path, "pickle")
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, IndexError) as exc:
        raise DatasetFormatError(path, f"not a readable pickle ({type(exc).__name__}: {exc})") from None


def load_npy_dict(path: str | Path) -> dict[str, Any]:
    """Load a ``.npy`` file that holds a pickled dict (the CoTracker Kubric annotation layout)."""
    path = require_file(path, "annotation")
    try:
        value = np.load(path, allow_pickle=True)
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise DatasetFormatError(path, f"not a readable .npy file ({exc})") from None
    if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
        value = value.item()
    if not isinstance(value, dict):
        raise DatasetFormatError(path, f"expected a pickled dict, found {type(value).__name__}")
    return value


def load_npz(path: str | Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Load the arrays ``keys`` (every array when None; absent keys are left out) of a ``.npz`` archive into memory
    and close the archive; the other arrays are never read."""
    path = require_file(path, "annotation")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files if keys is None or key in keys}
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetFormatError(path, f"not a readable .npz archive ({exc})") from None


def require_keys(mapping: Any, keys: tuple[str, ...], source: str | Path) -> None:
    """Check that ``mapping`` is a dict holding all ``keys``."""
    if not isinstance(mapping, dict):
        raise DatasetFormatError(source, f"expected a dict, found {type(mapping).__name__}")
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise DatasetFormatError(source, f"missing key(s) {missing}; found {sorted(map(str, mapping))}")
