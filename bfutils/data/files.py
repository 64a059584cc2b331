"""Reading image files: decoding to RGB uint8, named errors for bad files, scanning folders."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bfutils.data.pixels import gray_to_rgb, to_uint8

logger = logging.getLogger(__name__)

MAX_PIXELS = 64_000_000
"""Default pixel limit of :func:`read_image_file` (8000 x 8000); larger files are refused."""
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"})


class ImageReadError(ValueError):
    """A file could not be read as an image. ``str(err)`` names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(str(path), problem)  # both in args, so the error pickles
        self.path, self.problem = Path(path), problem

    def __str__(self) -> str:
        return f"cannot read image {self.path}: {self.problem}"


def read_image_file(path: str | Path, *, page: int = 0, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read any image file PIL understands as RGB uint8 (HxWx3).

    16-bit and float images are percentile-scaled to 8 bits; alpha is composited on black.
    PIL's own decompression-bomb guard (2x ``PIL.Image.MAX_IMAGE_PIXELS``) still applies on
    top of ``max_pixels``.

    Args:
        path: Image file.
        page: Page (frame) of a multi-page file.
        max_pixels: Files with more pixels are refused before decoding.

    Raises:
        ImageReadError: Missing, empty, non-image, too large, truncated or corrupt file.
    """
    return _with_image(path, max_pixels, lambda im: _decode(im, page=page, path=path))


def handle(error: ImageReadError, on_error: str) -> None:
    """Raise ``error`` (``on_error="raise"``) or log it at warning level (``"skip"``)."""
    if on_error == "raise":
        raise error
    logger.warning("skipping %s", error)


def existing_dir(root: str | Path, source: str) -> Path:
    """``root`` as a Path, or a FileNotFoundError naming the source."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{source}: root {root} is not a directory")
    return root


def scan_images(root: Path, *, on_error, validate, limit, pages, glob="*", exclude=()) -> list:
    """``(path, page, n_pages)`` of the image files under ``root``, sorted by path.

    Files are recognised by extension; hidden files (``.DS_Store``, ``._x.png``) are ignored.
    """
    if pages not in ("all", "first"):
        raise ValueError(f"pages must be 'all' or 'first', got {pages!r}")
    files = sorted(
        p
        for p in root.rglob(glob)
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not p.name.startswith(".")
        and not set(p.relative_to(root).parts) & set(exclude)
        and p.is_file()
    )
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {root}")
    found = []
    for path in files[:limit]:
        try:
            n_pages = _count_pages(path, validate=validate)
        except ImageReadError as exc:
            handle(exc, on_error)
            continue
        found += [(path, page, n_pages) for page in range(n_pages if pages == "all" else 1)]
    return found


def _with_image(path: str | Path, max_pixels: int, read: Callable):
    """Open ``path`` with PIL and apply ``read``, turning every failure into ImageReadError."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # max_pixels below replaces PIL's warning; PIL's hard error still fires past 2x.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        path,
                        f"{width}x{height} pixels exceed max_pixels={max_pixels} "
                        "(possible decompression bomb; raise max_pixels to read it)",
                    )
                return read(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"refused as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not an image file (format not recognised)") from exc
    except Exception as exc:  # decoders raise OSError, SyntaxError, zlib.error, struct.error...
        problem = f"truncated or corrupt image data ({type(exc).__name__}: {exc})"
        raise ImageReadError(path, problem) from exc


def _decode(im: Image.Image, *, page: int, path) -> np.ndarray:
    n_pages = getattr(im, "n_frames", 1)
    if not 0 <= page < n_pages:
        raise ImageReadError(path, f"page {page} requested but the file has {n_pages} page(s)")
    im.seek(page)
    im.load()
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return gray_to_rgb(to_uint8(np.asarray(im)))
    if im.mode in ("1", "L"):
        return gray_to_rgb(np.asarray(im.convert("L")))
    if "A" in im.mode or im.mode == "P":
        rgba = im.convert("RGBA")
        if rgba.getchannel("A").getextrema() == (255, 255):  # opaque (all DSB2018 PNGs): fast
            return np.asarray(rgba.convert("RGB"))
        rgba = np.asarray(rgba, dtype=np.uint16)
        return ((rgba[..., :3] * rgba[..., 3:] + 127) // 255).astype(np.uint8)  # on black
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def _count_pages(path: Path, *, validate: bool) -> int:
    """Number of pages of an image file; with ``validate`` every page is decoded once."""
    n_pages = _with_image(path, MAX_PIXELS, lambda im: getattr(im, "n_frames", 1))
    for page in range(n_pages if validate else 0):
        read_image_file(path, page=page)
    return n_pages
