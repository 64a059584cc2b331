"""Image sources behind one interface: a records table plus RGB uint8 square images.

Every source returns *records*, a :class:`pandas.DataFrame` with the columns in :data:`COLUMNS`:

- ``image_id``: globally unique, prefixed with the source (``embedded:mni:T1:axial:046``).
- ``group``: the unit a train/test split must never cut; images that share pixels or anatomy
  share a group. Prefixed with the source, so a group never spans two sources.
- ``modality``, ``source`` (``embedded``, ``haxby``, ``folder``, ``dsb2018``, ``bccd``,
  ``graphics``),
  ``source_name`` (finer: ``mni152_t1``, ``skimage_retina``, ...).
- ``stack`` (the volume, channel or image an image is cut from), ``stack_kind`` (what a different
  stack at the same position means for a hard negative: ``tissue``, ``frame``, ``replicate``
  (a drawn graphic's replicate of one experiment) or ``""``).
- ``axis`` (``axial``/``coronal``/``sagittal``, ``tile``, ``time``, ``page`` or ``""``),
  ``pos`` and ``pos2`` (coordinates along the axis, in ``unit``: ``mm``, ``tile``, ``frame``,
  ``block``, ``page`` or ``""``), and ``path`` (a file, or a packaged resource such as
  ``nilearn:mni152_t1`` or ``skimage:retina[0:128,256:384]`` with the pixel box of a tile).

Records hold everything needed to recompute their pixels, so they survive a CSV round trip:
:func:`load_images` re-slices volumes (cached per process) and re-reads files.

Choices, stated once:
- Squares: the image is resized to fit ``size`` keeping its aspect and padded with black
  (``fit="pad"``, nothing cut off; slices and fundus images already have black surroundings),
  or scaled to cover and centre-cropped (``fit="crop"``). Resampling is Lanczos (anti-aliased).
- Intensity: volumes are scaled to uint8 once per volume (0.5-99.5 percentile), so the slices
  of a volume stay comparable; files of more than 8 bits per sample are scaled per image the
  same way; 8-bit files are kept as they are. Gray becomes three equal channels.
- Alpha is composited on black. Multi-page files (TIFF pages, animated GIF/PNG frames) give
  one image per page (``pages="all"``, axis ``page``) or only the first (``pages="first"``).
- Bad files raise :class:`ImageReadError` naming the file and the problem; with
  ``on_error="skip"`` they are logged at warning level and left out of the records.

Modules, one concept each: :mod:`~bfutils.data.schema` (the records table),
:mod:`~bfutils.data.pixels` (uint8 scaling, square fitting), :mod:`~bfutils.data.files`
(reading image files), :mod:`~bfutils.data.embedded`, :mod:`~bfutils.data.haxby`,
:mod:`~bfutils.data.imagefiles` and :mod:`~bfutils.data.graphics` (the sources; the last draws
blots, gels and dot plots), :mod:`~bfutils.data.downloads` (public archives).
The names exported here are the public API; import them from ``bfutils.data``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from bfutils.data import embedded, graphics, haxby, imagefiles
from bfutils.data.downloads import (
    BCCD_SHA256,
    BCCD_URL,
    DSB2018_SHA256,
    DSB2018_URL,
    ChecksumError,
    DownloadError,
    download,
)
from bfutils.data.embedded import AXES
from bfutils.data.files import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    ImageReadError,
    handle,
    read_image_file,
)
from bfutils.data.pixels import check_fit, fit_square, to_square
from bfutils.data.schema import COLUMNS, check_unique, frame
from bfutils.progress import bar as tqdm

__all__ = [
    "AXES",
    "BCCD_SHA256",
    "BCCD_URL",
    "COLUMNS",
    "DSB2018_SHA256",
    "DSB2018_URL",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ChecksumError",
    "DownloadError",
    "ImageReadError",
    "build_dataset",
    "download",
    "fit_square",
    "list_sources",
    "load_images",
    "load_records",
    "read_image_file",
    "record_pixels",
]

_SOURCES = {
    "embedded": embedded.records,
    "haxby": haxby.records,
    "folder": imagefiles.folder_records,
    "dsb2018": imagefiles.dsb_records,
    "bccd": imagefiles.bccd_records,
    "graphics": graphics.records,
}


def list_sources() -> list[str]:
    """Names accepted by :func:`load_records`, the offline default (``embedded``) first."""
    return list(_SOURCES)


def load_records(
    source: str = "embedded",
    *,
    root: str | Path | None = None,
    on_error: str = "raise",
    **options,
) -> pd.DataFrame:
    """List the images of one source.

    Args:
        source: One of :func:`list_sources`.
        root: Local folder to read. ``embedded`` and ``graphics`` take none; ``haxby``,
            ``dsb2018`` and ``bccd`` download public data when it is None; ``folder`` requires
            it.
        on_error: ``"raise"`` an :class:`ImageReadError` on the first bad file, or ``"skip"``
            it with a logged warning.
        **options: Source options. embedded: ``slab=8, gap=2, min_fraction=0.10, tile=128,
            tile_gap=32, tile_min_fraction=0.5``. haxby: ``subjects=(1,), bold=None,
            slices=3``. folder: ``group_by="subfolder"|"regex"|"file", pattern=None,
            modality="unknown", name=None, limit=None, pages="all"|"first", validate=True``.
            dsb2018: ``limit, sibling_threshold=0.3``. bccd: ``limit, block=10, validate``.
            graphics: ``groups=16, replicates=4, first_group=0``.

    Returns:
        Records with the columns in :data:`COLUMNS`, one row per image.

    Raises:
        ValueError: Unknown source, bad option, or duplicate image ids.
        ImageReadError: A bad file while ``on_error="raise"``.
        DownloadError: A needed download failed (the message says how to pass ``root``).
    """
    if source not in _SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {list_sources()}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    records = frame(_SOURCES[source](root=root, on_error=on_error, **options))
    check_unique(records)
    return records


def load_images(
    records: pd.DataFrame, size: int, *, fit: str = "pad", progress: bool = True
) -> np.ndarray:
    """Pixels of every record as square RGB images.

    Bad files raise :class:`ImageReadError`; to leave them out instead, list the records with
    ``load_records(..., on_error="skip")`` (which decodes every file) or use
    :func:`build_dataset`, which keeps records and images aligned.

    Args:
        records: Rows from :func:`load_records` (any subset, any order).
        size: Side of the output squares in pixels.
        fit: ``"pad"`` (keep everything, black borders) or ``"crop"`` (centre crop).
        progress: Show a tqdm bar.

    Returns:
        Array of shape ``(len(records), size, size, 3)``, dtype uint8, in the records' order.
    """
    images, _ = _load_images(records, size, fit=fit, on_error="raise", progress=progress)
    return images


def build_dataset(
    sources: Iterable[str | dict],
    size: int,
    *,
    on_error: str = "raise",
    fit: str = "pad",
    progress: bool = True,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Records and images of several sources, aligned row by row.

    Args:
        sources: Source names, or dicts ``{"source": name, "root": ..., **options}``.
        size: Side of the output squares in pixels.
        on_error: ``"raise"`` or ``"skip"`` (bad files are logged and dropped from both).
        fit: ``"pad"`` or ``"crop"``, see :func:`load_images`.
        progress: Show a tqdm bar while loading images.

    Returns:
        ``(records, images)`` with ``images[i]`` the pixels of ``records.iloc[i]``.
    """
    frames = []
    for spec in sources:
        spec = {"source": spec} if isinstance(spec, str) else dict(spec)
        name = spec.pop("source", None)
        if name in ("folder", "bccd"):
            spec.setdefault("validate", False)  # decoded once, below, instead of twice
        frames.append(load_records(name, on_error=on_error, **spec))
    if not frames:
        raise ValueError("build_dataset needs at least one source")
    records = pd.concat(frames, ignore_index=True)
    check_unique(records)
    images, ok = _load_images(records, size, fit=fit, on_error=on_error, progress=progress)
    return records[ok].reset_index(drop=True), images


def _load_images(records, size, *, fit, on_error, progress) -> tuple[np.ndarray, np.ndarray]:
    """Images of the records that load, and a mask of which records did."""
    missing = set(COLUMNS) - set(records.columns)
    if missing:
        raise ValueError(f"records lack columns {sorted(missing)}; make them with load_records")
    check_fit(size, fit)
    images = np.zeros((len(records), size, size, 3), dtype=np.uint8)
    ok = np.ones(len(records), dtype=bool)
    rows = records.itertuples(index=False)
    for i, row in enumerate(tqdm(rows, total=len(records), desc="images", disable=not progress)):
        try:
            images[i] = to_square(record_pixels(row), size=size, fit=fit)
        except ImageReadError as exc:
            handle(exc, on_error)
            ok[i] = False
    return images[ok], ok


def record_pixels(row) -> np.ndarray:
    """Native-resolution RGB uint8 pixels of one record (a row of :func:`load_records`)."""
    if row.source == "embedded":
        return embedded.pixels(row)
    if row.source == "haxby":
        return haxby.pixels(row)
    if row.source == "graphics":
        return graphics.pixels(row)
    return read_image_file(row.path, page=int(row.pos) if row.axis == "page" else 0)
