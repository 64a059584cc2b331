"""The finder's inputs: a folder of figure panels, read once, with every bad file named.

A *panel* is one page of one image file. Multi-page files (TIFF stacks, animated GIF/PNG)
give one panel per page, keyed ``file.tif#p2`` (pages counted from 0). Files that cannot be
used are not errors: :func:`scan` and :func:`read` report them with a reason, and the finder
lists them in ``skipped.csv`` and the report while it carries on with the rest.

Reasons a file is skipped: unreadable (missing, empty, not an image, truncated, corrupt, over
the decompression limit :data:`bfutils.data.MAX_PIXELS`; the text comes from
:class:`bfutils.data.ImageReadError`) or too small to carry evidence (fewer pixels than a
:data:`MIN_SIDE` x :data:`MIN_SIDE` panel, or a side under :data:`MIN_THIN_SIDE` pixels).
Grayscale, RGBA, 16-bit and palette files are read as RGB uint8 by
:func:`bfutils.data.read_image_file`. A *blank* panel (nearly uniform) is kept but carries no
evidence: see :func:`is_blank`.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bfutils import data

MIN_SIDE = 16
"""Panels with fewer pixels than a ``MIN_SIDE`` x ``MIN_SIDE`` square are skipped: too small to
carry evidence. The bound is on the area, not on each side: real reused panels include thin
strips (a gel band, a row of an inset, 40 x 14 px), which carry as many pixels as a 24 px square."""
MIN_THIN_SIDE = 8
"""Panels with a side under this many pixels are skipped whatever their area (a line)."""
BLANK_RANGE = 12
"""A panel whose grey levels span fewer than this (0.5th to 99.5th percentile) is blank."""


@dataclass(frozen=True)
class Panel:
    """One page of one image file.

    Attributes:
        key: name shown in tables: the path relative to the scanned folder, ``#p<page>`` added
            for pages of multi-page files.
        path: the file.
        page: page (frame) index in the file.
        sha: content hash of the file's bytes plus the page: the cache key of its descriptors.
    """

    key: str
    path: Path
    page: int
    sha: str


def content_hash(path: str | Path, page: int = 0) -> str:
    """SHA-1 of a file's bytes (and the page, when not 0): same pixels, same key, any name."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if page:
        h.update(f"#p{page}".encode())
    return h.hexdigest()


def _n_pages(path: Path) -> int:
    """Pages in an image file; 1 when PIL cannot open it (reading then names the problem)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - the reader reports the problem with its reason
        return 1


def list_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (by extension, recursive, hidden files ignored), sorted.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of image files")
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in data.IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.is_file()
    )


def scan(folder: str | Path, prefix: str = "") -> tuple[list[Panel], list[dict]]:
    """Every panel under ``folder``, and the files that could not even be hashed.

    Args:
        folder: folder of image files (searched recursively).
        prefix: put before each key (e.g. ``"ref/"`` for a reference library).

    Returns:
        ``(panels, skipped)``; ``skipped`` rows are ``{"file": ..., "reason": ...}``.
    """
    root = Path(folder)
    panels, skipped = [], []
    for path in list_files(root):
        rel = prefix + path.relative_to(root).as_posix()
        if path.stat().st_size == 0:
            skipped.append({"file": rel, "reason": "file is empty (0 bytes)"})
            continue
        n = _n_pages(path)
        for page in range(n):
            key = rel + (f"#p{page}" if n > 1 else "")
            panels.append(Panel(key=key, path=path, page=page, sha=content_hash(path, page)))
    return panels, skipped


def read(panel: Panel) -> np.ndarray:
    """Pixels of a panel as RGB uint8.

    Raises:
        bfutils.data.ImageReadError: unreadable, or too small (:func:`too_small`).
    """
    image = data.read_image_file(panel.path, page=panel.page)
    h, w = image.shape[:2]
    reason = too_small(h, w)
    if reason:
        raise data.ImageReadError(panel.path, reason)
    return image


def too_small(h: int, w: int) -> str:
    """Why a ``w`` x ``h`` panel is too small to carry evidence, or ``""`` when it is not."""
    if min(h, w) < MIN_THIN_SIDE:
        return f"too small ({w}x{h} px: a side under {MIN_THIN_SIDE} px)"
    if h * w < MIN_SIDE * MIN_SIDE:
        return f"too small ({w}x{h} px: fewer pixels than {MIN_SIDE}x{MIN_SIDE})"
    return ""


def is_blank(image: np.ndarray) -> bool:
    """Whether a panel is nearly uniform (an empty or black crop): it then carries no evidence.

    A copy of a blank panel looks like every other blank panel, so any similarity between two
    blank panels says nothing about reuse. The test is the spread of grey levels: from the
    0.5th percentile to the brightest pixel that survives a 3 x 3 median (so a few bright
    objects on black, a sparse fluorescence field, count as content; a lone hot pixel or a
    JPEG speck does not).
    """
    gray = image.mean(axis=2) if image.ndim == 3 else image
    step = max(1, int(np.sqrt(gray.size / 65536)))  # ~65k pixels are plenty for percentiles
    sample = np.ascontiguousarray(gray[::step, ::step], dtype=np.float32)
    low = np.percentile(sample, 0.5)
    high = float(cv2.medianBlur(sample, 3).max()) if min(sample.shape) >= 3 else sample.max()
    return bool(high - low < BLANK_RANGE)
