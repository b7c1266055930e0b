"""Reading and writing videos (any format ffmpeg decodes), with clear errors for missing or corrupt files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np


class VideoReadError(RuntimeError):
    """A video file that is missing, empty, or cannot be decoded."""


def _decoder_reason(err: BaseException) -> str:
    """The decoder's own last word on a failure (ffmpeg errors carry its whole banner; only the last line says why)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1].rstrip(")") if lines else type(err).__name__


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video as uint8 (H, W, 3) arrays, one at a time (nothing is held in memory)."""
    import imageio.v2 as imageio

    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"video not found: {path}")
    try:
        reader = imageio.get_reader(path)
    except Exception as err:
        raise VideoReadError(f"no frames could be decoded from {path} ({_decoder_reason(err)})") from err
    count = 0
    try:
        for frame in reader:
            frame = np.asarray(frame)
            if frame.ndim == 2:
                frame = np.repeat(frame[..., None], 3, axis=-1)
            yield np.ascontiguousarray(frame[..., :3]).astype(np.uint8, copy=False)
            count += 1
    except Exception as err:
        if count == 0:
            raise VideoReadError(f"no frames could be decoded from {path} ({_decoder_reason(err)})") from err
        raise VideoReadError(f"{path} is corrupt: decoding stopped after {count} frame(s) "
                             f"({_decoder_reason(err)})") from err
    finally:
        reader.close()
    if count == 0:
        raise VideoReadError(f"no frames could be decoded from {path} (the video holds no frames)")


def video_fps(path: str | Path, default: float = 24.0) -> float:
    """Frames per second of a video file, or ``default`` when the container does not say."""
    import imageio.v2 as imageio

    try:
        reader = imageio.get_reader(Path(path))
        fps = reader.get_meta_data().get("fps")
        reader.close()
    except Exception:
        return default
    return float(fps) if fps else default


def video_frame_count(path: str | Path) -> int | None:
    """The number of frames a video file says it holds (from its container, without decoding), or None when it
    does not say. It may be off by a frame or two for some containers; it sizes progress bars."""
    import imageio.v2 as imageio

    try:
        reader = imageio.get_reader(Path(path))
        meta = reader.get_meta_data()
        reader.close()
    except Exception:
        return None
    frames = meta.get("nframes")
    if isinstance(frames, (int, float)) and math.isfinite(frames) and frames > 0:
        return int(frames)
    duration, fps = meta.get("duration"), meta.get("fps")
    if duration and fps and math.isfinite(duration * fps):
        return max(int(round(duration * fps)), 1)
    return None


def write_video(path: str | Path, frames: list[np.ndarray] | np.ndarray, fps: float = 24.0) -> Path:
    """Write uint8 (H, W, 3) frames as an H.264 MP4 (or GIF, by extension)."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, list(frames), duration=1000.0 / fps, loop=0)
        return path
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1, quality=8) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path
