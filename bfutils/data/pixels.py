"""Pixel conventions shared by every source: uint8 scaling, gray to RGB, square fitting."""

from __future__ import annotations

import numpy as np
from PIL import Image


def fit_square(image: np.ndarray, size: int, fit: str = "pad") -> np.ndarray:
    """An RGB uint8 image as a ``size`` x ``size`` square, exactly as ``load_images`` does.

    Args:
        image: HxWx3 uint8 (e.g. from ``read_image_file``).
        size: side of the square in pixels.
        fit: ``"pad"`` (keep everything, black borders) or ``"crop"`` (centre crop).
    """
    check_fit(size, fit)
    return to_square(image, size=int(size), fit=fit)


def check_fit(size: int, fit: str) -> None:
    """Refuse a fit other than pad or crop, or a size below 1."""
    if fit not in ("pad", "crop") or int(size) < 1:
        raise ValueError(f"need size >= 1 and fit 'pad' or 'crop', got size={size}, fit={fit!r}")


def to_square(image: np.ndarray, *, size: int, fit: str) -> np.ndarray:
    """Scale so the long side (pad) or short side (crop) is ``size``; centre on black.

    Hand-written rather than ``PIL.ImageOps.pad``/``fit``: those take no ``reducing_gap``
    (about 2x slower at the small sizes used here) and round offsets and crop boxes
    differently, so they would change the pixels of existing data sets.
    """
    pil = Image.fromarray(image)
    width, height = pil.size
    scale = size / (max(width, height) if fit == "pad" else min(width, height))
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    # reducing_gap: a box reduction first, then Lanczos; still anti-aliased, about 2x faster.
    pil = pil.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(pil, ((size - new[0]) // 2, (size - new[1]) // 2))  # < 0 offsets crop
    return np.asarray(canvas)


def to_uint8(values: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Robust linear scaling to uint8: the low/high percentiles map to 0/255."""
    values = np.asarray(values, dtype=np.float32)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    lo, hi = np.percentile(finite, [low, high])
    scaled = np.nan_to_num((values - lo) / max(hi - lo, 1e-12))
    return (np.clip(scaled, 0, 1) * 255 + 0.5).astype(np.uint8)


def gray_to_rgb(image: np.ndarray) -> np.ndarray:
    """Three equal channels for a 2-D image; a contiguous uint8 copy of an RGB one."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image, dtype=np.uint8)
