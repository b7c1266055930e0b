"""Image operations the datasets need, written with numpy, PIL, torch and OpenCV (no torchvision).

``color_jitter`` reproduces torchvision's ``ColorJitter`` on PIL images (the same PIL enhancers, random order and
hue shift, truncated to whole hue steps as torchvision's uint8 cast does); ``gaussian_blur`` reproduces
``GaussianBlur`` (separable kernel, reflect padding); ``resize_bilinear`` is OpenCV's ``INTER_LINEAR``, as the
reference's MOVi-F augmentation calls it (PyTorch's bilinear differs by up to 0.003 on a 0-255 scale); ``resize_video_lanczos`` matches mediapy's
``resize_video`` used for TAP-Vid (PIL Lanczos per frame).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance


def color_jitter(
    frame: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.25 / 3.14,
) -> np.ndarray:
    """Randomly jitter brightness, contrast, saturation and hue of a uint8 (H, W, 3) frame, in random order."""
    factors = {
        "brightness": rng.uniform(1 - brightness, 1 + brightness),
        "contrast": rng.uniform(1 - contrast, 1 + contrast),
        "saturation": rng.uniform(1 - saturation, 1 + saturation),
        "hue": rng.uniform(-hue, hue),
    }
    image = Image.fromarray(frame)
    for name in rng.permutation(list(factors)):
        factor = factors[name]
        if name == "brightness":
            image = ImageEnhance.Brightness(image).enhance(factor)
        elif name == "contrast":
            image = ImageEnhance.Contrast(image).enhance(factor)
        elif name == "saturation":
            image = ImageEnhance.Color(image).enhance(factor)
        else:
            image = _shift_hue(image, factor)
    return np.asarray(image, dtype=np.uint8).copy()


def _shift_hue(image: Image.Image, factor: float) -> Image.Image:
    h, s, v = image.convert("HSV").split()
    shifted = (np.asarray(h, dtype=np.int16) + int(factor * 255)) % 256
    return Image.merge("HSV", (Image.fromarray(shifted.astype(np.uint8), "L"), s, v)).convert("RGB")


def gaussian_blur(frame: np.ndarray, sigma: float, kernel_size: int = 11) -> np.ndarray:
    """Blur a uint8 (H, W, 3) frame with a separable Gaussian of the given sigma (reflect padding)."""
    half = (kernel_size - 1) / 2
    x = torch.linspace(-half, half, kernel_size)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    image = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    pad = kernel_size // 2
    image = F.pad(image, (pad, pad, pad, pad), mode="reflect")
    image = F.conv2d(image, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    image = F.conv2d(image, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return image[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def resize_bilinear(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a float32 (H, W, C) frame to (height, width) with OpenCV's INTER_LINEAR."""
    frame = np.ascontiguousarray(frame, dtype=np.float32)
    return cv2.resize(frame, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)


def resize_video_lanczos(video: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a uint8 (T, H, W, 3) video frame by frame with PIL's Lanczos filter."""
    if video.shape[1:3] == (height, width):
        return video
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.LANCZOS)) for f in video])
