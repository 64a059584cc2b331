"""Image sources behind one interface: a records table plus RGB uint8 square images.

Every source returns *records*, a :class:`pandas.DataFrame` with the columns in :data:`COLUMNS`:

- ``image_id``: globally unique, prefixed with the source (``embedded:mni:T1:axial:046``).
- ``group``: the unit a train/test split must never cut; images that share pixels or anatomy
  share a group. Prefixed with the source, so a group never spans two sources.
- ``modality``, ``source`` (``embedded``, ``haxby``, ``folder``, ``dsb2018``, ``bccd``),
  ``source_name`` (finer: ``mni152_t1``, ``skimage_retina``, ...).
- ``stack`` (the volume, channel or image an image is cut from), ``stack_kind`` (what a different
  stack at the same position means for a hard negative: ``tissue``, ``frame`` or ``""``).
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
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import urllib.error
import urllib.request
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from bfutils import paths

logger = logging.getLogger(__name__)

COLUMNS = (
    "image_id", "group", "modality", "source", "source_name", "stack", "stack_kind",
    "axis", "pos", "pos2", "unit", "path",
)  # fmt: skip
MAX_PIXELS = 64_000_000
"""Default pixel limit of :func:`read_image_file` (8000 x 8000); larger files are refused."""
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"})
AXES = ("sagittal", "coronal", "axial")  # voxel axes 0, 1, 2 of a volume in RAS orientation

DSB2018_URL = "https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip"
BCCD_URL = "https://github.com/Shenggan/BCCD_Dataset/archive/refs/heads/master.zip"
# Not pinned yet (they could not be fetched when this was written): the first download records
# the digest beside the archive (``<archive>.sha256``), logs it, and later runs verify against it.
DSB2018_SHA256: str | None = None
BCCD_SHA256: str | None = None

_MNI = (  # stack, packaged resource, modality
    ("T1", "nilearn:mni152_t1", "mri_t1"),
    ("gm", "nilearn:mni152_gm", "mri_gm"),
    ("wm", "nilearn:mni152_wm", "mri_wm"),
)
_EPI = "nibabel:tests/data/example4d.nii.gz"
_SKIMAGE = (  # skimage.data function, modality
    ("cell", "microscopy_phase"),  # quantitative phase image of a cell (skimage docs)
    ("immunohistochemistry", "histology_ihc"),
    ("retina", "fundus"),
    ("microaneurysms", "fundus"),
)
_SKIMAGE_PATH = re.compile(r"skimage:(\w+)(?:\[(\d+):(\d+),(\d+):(\d+)\])?$")
_BRAIN_LEVEL = 12  # uint8 level (~5% of full scale) above which a voxel counts as brain


class ImageReadError(ValueError):
    """A file could not be read as an image. ``str(err)`` names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(str(path), problem)  # both in args, so the error pickles
        self.path, self.problem = Path(path), problem

    def __str__(self) -> str:
        return f"cannot read image {self.path}: {self.problem}"


class DownloadError(RuntimeError):
    """A public archive could not be downloaded or unpacked."""


class ChecksumError(DownloadError):
    """A downloaded archive does not have the expected sha256 digest."""


@dataclass(frozen=True)
class _Archive:
    url: str
    sha256: str | None
    filename: str


_ARCHIVES = {
    "dsb2018": _Archive(url=DSB2018_URL, sha256=DSB2018_SHA256, filename="stage1_train.zip"),
    "bccd": _Archive(url=BCCD_URL, sha256=BCCD_SHA256, filename="BCCD_Dataset-master.zip"),
}


# ---------------------------------------------------------------------------------------------
# Public API


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
        root: Local folder to read. ``embedded`` takes none; ``haxby``, ``dsb2018`` and ``bccd``
            download public data when it is None; ``folder`` requires it.
        on_error: ``"raise"`` an :class:`ImageReadError` on the first bad file, or ``"skip"``
            it with a logged warning.
        **options: Source options. embedded: ``slab=8, gap=2, min_fraction=0.10, tile=128,
            tile_gap=32, tile_min_fraction=0.5``. haxby: ``subjects=(1,), bold=None,
            slices=3``. folder: ``group_by="subfolder"|"regex"|"file", pattern=None,
            modality="unknown", name=None, limit=None, pages="all"|"first", validate=True``.
            dsb2018: ``limit, sibling_threshold=0.3``. bccd: ``limit, block=10, validate``.

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
    records = _frame(_SOURCES[source](root=root, on_error=on_error, **options))
    _check_unique(records)
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
    _check_unique(records)
    images, ok = _load_images(records, size, fit=fit, on_error=on_error, progress=progress)
    return records[ok].reset_index(drop=True), images


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


def fit_square(image: np.ndarray, size: int, fit: str = "pad") -> np.ndarray:
    """An RGB uint8 image as a ``size`` x ``size`` square, exactly as :func:`load_images` does.

    Args:
        image: HxWx3 uint8 (e.g. from :func:`read_image_file`).
        size: side of the square in pixels.
        fit: ``"pad"`` (keep everything, black borders) or ``"crop"`` (centre crop).
    """
    if fit not in ("pad", "crop") or int(size) < 1:
        raise ValueError(f"need size >= 1 and fit 'pad' or 'crop', got size={size}, fit={fit!r}")
    return _fit_square(image, size=int(size), fit=fit)


def download(
    url: str, dest: str | Path, *, sha256: str | None = None, progress: bool = True
) -> Path:
    """Download ``url`` to ``dest`` once, verifying its sha256 digest.

    Without ``sha256`` the digest of the first download is stored in ``<dest>.sha256`` (and
    logged) and later calls verify against it.

    Returns:
        ``dest`` as a Path.

    Raises:
        DownloadError: The URL could not be fetched (the message says how to work offline).
        ChecksumError: The file does not match the expected digest (a bad file is removed).
    """
    dest = Path(dest)
    sidecar = dest.with_name(dest.name + ".sha256")
    expected = sha256 or (sidecar.read_text().split()[0] if sidecar.is_file() else None)
    if dest.is_file():
        _verify(dest, expected, source=str(dest), remove=False)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        try:
            digest = _stream(url, part, progress=progress)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"could not download {url} ({exc}). Download it on a machine with internet, "
                f"unpack it and pass root=<that folder>, or place the archive at {dest}."
            ) from exc
        _verify(part, expected, source=url, remove=True, digest=digest)
        part.replace(dest)
    if expected is None:
        digest = _sha256(dest)
        sidecar.write_text(f"{digest}  {dest.name}\n")
        logger.warning("no pinned sha256 for %s: recorded %s in %s", url, digest, sidecar)
    return dest


# ---------------------------------------------------------------------------------------------
# Records and images: shared helpers

_DEFAULTS = {
    "stack": "",
    "stack_kind": "",
    "axis": "",
    "pos": 0.0,
    "pos2": 0.0,
    "unit": "",
    "path": "",
}


def _row(**fields) -> dict:
    return {**_DEFAULTS, **fields}


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({c: float if c in ("pos", "pos2") else str for c in COLUMNS})


def _check_unique(records: pd.DataFrame) -> None:
    dup = records["image_id"][records["image_id"].duplicated()]
    if len(dup):
        raise ValueError(f"duplicate image ids (a source loaded twice?): {list(dup[:5])}")


def _handle(error: ImageReadError, on_error: str) -> None:
    if on_error == "raise":
        raise error
    logger.warning("skipping %s", error)


def _load_images(records, size, *, fit, on_error, progress) -> tuple[np.ndarray, np.ndarray]:
    """Images of the records that load, and a mask of which records did."""
    missing = set(COLUMNS) - set(records.columns)
    if missing:
        raise ValueError(f"records lack columns {sorted(missing)}; make them with load_records")
    if fit not in ("pad", "crop") or int(size) < 1:
        raise ValueError(f"need size >= 1 and fit 'pad' or 'crop', got size={size}, fit={fit!r}")
    images = np.zeros((len(records), size, size, 3), dtype=np.uint8)
    ok = np.ones(len(records), dtype=bool)
    rows = records.itertuples(index=False)
    for i, row in enumerate(tqdm(rows, total=len(records), desc="images", disable=not progress)):
        try:
            images[i] = _fit_square(_pixels(row), size=size, fit=fit)
        except ImageReadError as exc:
            _handle(exc, on_error)
            ok[i] = False
    return images[ok], ok


def _pixels(row) -> np.ndarray:
    """Native-resolution RGB uint8 pixels of one record."""
    if row.source == "embedded":
        return _embedded_pixels(row)
    if row.source == "haxby":
        return _haxby_pixels(row)
    return read_image_file(row.path, page=int(row.pos) if row.axis == "page" else 0)


def _fit_square(image: np.ndarray, *, size: int, fit: str) -> np.ndarray:
    """Scale so the long side (pad) or short side (crop) is ``size``; centre on black."""
    pil = Image.fromarray(image)
    width, height = pil.size
    scale = size / (max(width, height) if fit == "pad" else min(width, height))
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    # reducing_gap: a box reduction first, then Lanczos; still anti-aliased, about 2x faster.
    pil = pil.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(pil, ((size - new[0]) // 2, (size - new[1]) // 2))  # < 0 offsets crop
    return np.asarray(canvas)


def _to_uint8(values: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Robust linear scaling to uint8: the low/high percentiles map to 0/255."""
    values = np.asarray(values, dtype=np.float32)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    lo, hi = np.percentile(finite, [low, high])
    scaled = np.nan_to_num((values - lo) / max(hi - lo, 1e-12))
    return (np.clip(scaled, 0, 1) * 255 + 0.5).astype(np.uint8)


def _gray_to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Reading files


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
        return _gray_to_rgb(_to_uint8(np.asarray(im)))
    if im.mode in ("1", "L"):
        return _gray_to_rgb(np.asarray(im.convert("L")))
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


def _scan_images(root: Path, *, on_error, validate, limit, pages, glob="*", exclude=()) -> list:
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
            _handle(exc, on_error)
            continue
        found += [(path, page, n_pages) for page in range(n_pages if pages == "all" else 1)]
    return found


def _existing_dir(root: str | Path, source: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{source}: root {root} is not a directory")
    return root


# ---------------------------------------------------------------------------------------------
# Source "embedded": MNI152 templates, nibabel's example EPI, scikit-image images


@dataclass(frozen=True)
class _Volume:
    data: np.ndarray  # uint8, RAS voxel order, (x, y, z) or (x, y, z, t)
    origin: tuple[float, float, float]  # mm of voxel 0 along each axis
    zooms: tuple[float, float, float]  # mm per voxel along each axis


def _load_resource(resource: str):
    """The nibabel image behind a packaged resource name."""
    if resource == _EPI:
        path = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (a nibabel install without test data)")
        return nib.load(path)
    from nilearn import datasets  # slow import (~1 s), paid only by sources that need it

    loaders = {
        "nilearn:mni152_t1": datasets.load_mni152_template,
        "nilearn:mni152_gm": datasets.load_mni152_gm_template,
        "nilearn:mni152_wm": datasets.load_mni152_wm_template,
    }
    if resource not in loaders:
        raise ValueError(f"unknown packaged volume {resource!r}")
    return loaders[resource](resolution=2)


@lru_cache(maxsize=8)
def _volume(resource: str) -> _Volume:
    img = nib.as_closest_canonical(_load_resource(resource))
    data = _to_uint8(img.get_fdata(dtype=np.float32))  # one scale per volume
    data.flags.writeable = False  # shared through the cache
    origin = tuple(float(v) for v in img.affine[:3, 3])
    return _Volume(data=data, origin=origin, zooms=tuple(map(float, img.header.get_zooms()[:3])))


def _slabs(fraction: np.ndarray, *, min_fraction: float, slab: int, gap: int) -> dict[int, int]:
    """Slice index -> slab number for slices with enough brain, leaving ``gap`` between slabs.

    Two slices of different slabs are at least ``gap + 1`` slices apart.
    """
    keep = np.flatnonzero(fraction >= min_fraction)
    if keep.size == 0:
        return {}
    offset = keep - keep[0]
    period = slab + gap
    return {
        int(i): int(o // period) for i, o in zip(keep, offset, strict=True) if o % period < slab
    }


def _slice_pos(vol: _Volume, axis: int, index: int) -> float:
    return round(vol.origin[axis] + index * vol.zooms[axis], 3)


def _volume_slice(vol: _Volume, axis: str, pos: float, frame: int = 0) -> np.ndarray:
    ax = AXES.index(axis)
    index = int(round((pos - vol.origin[ax]) / vol.zooms[ax]))
    plane = np.take(vol.data, index, axis=ax)
    if plane.ndim == 3:
        plane = plane[..., frame]
    return np.rot90(plane)  # second voxel axis (anterior or superior) points up


def _embedded_records(
    root=None,
    *,
    on_error="raise",
    slab=8,
    gap=2,
    min_fraction=0.10,
    tile=128,
    tile_gap=32,
    tile_min_fraction=0.5,
) -> list[dict]:
    if root is not None:
        raise ValueError("the embedded source ships with the packages and takes no root")
    slabbing = {"slab": slab, "gap": gap, "min_fraction": min_fraction}
    return (
        _mni_records(**slabbing)
        + _epi_records(**slabbing)
        + _tile_records(tile=tile, gap=tile_gap, min_fraction=tile_min_fraction)
    )


def _mni_records(**slabbing) -> list[dict]:
    """Slices of the T1, gm and wm templates; one group = one slab in all three tissues."""
    vols = {stack: _volume(resource) for stack, resource, _ in _MNI}
    brain = vols["T1"].data > _BRAIN_LEVEL  # same slices kept in every tissue
    rows = []
    for ax, axis in enumerate(AXES):
        fraction = brain.mean(axis=tuple(a for a in range(3) if a != ax))
        for index, k in _slabs(fraction, **slabbing).items():
            for stack, resource, modality in _MNI:
                rows.append(
                    _row(
                        image_id=f"embedded:mni:{stack}:{axis}:{index:03d}",
                        group=f"embedded:mni:{axis}:slab{k:02d}",
                        modality=modality,
                        source="embedded",
                        source_name=resource.split(":")[1],
                        stack=stack,
                        stack_kind="tissue",
                        axis=axis,
                        pos=_slice_pos(vols[stack], ax, index),
                        unit="mm",
                        path=resource,
                    )
                )
    return rows


def _epi_records(**slabbing) -> list[dict]:
    """Axial slices of both time points of nibabel's example EPI; a slab holds both frames."""
    vol = _volume(_EPI)
    fraction = (vol.data.mean(axis=-1) > _BRAIN_LEVEL).mean(axis=(0, 1))
    rows = []
    for index, k in _slabs(fraction, **slabbing).items():
        for frame in range(vol.data.shape[3]):
            rows.append(
                _row(
                    image_id=f"embedded:epi:t{frame}:axial:{index:03d}",
                    group=f"embedded:epi:axial:slab{k:02d}",
                    modality="fmri_epi",
                    source="embedded",
                    source_name="nibabel_example4d",
                    stack=f"t{frame}",
                    stack_kind="frame",
                    axis="axial",
                    pos=_slice_pos(vol, 2, index),
                    unit="mm",
                    path=_EPI,
                )
            )
    return rows


@lru_cache(maxsize=8)
def _skimage_image(name: str) -> np.ndarray:
    import skimage.data

    image = _gray_to_rgb(np.asarray(getattr(skimage.data, name)()))
    image.flags.writeable = False
    return image


def _tile_starts(length: int, tile: int, gap: int) -> list[int]:
    """Tile origins: blocks of two touching tiles, then ``gap`` pixels before the next block."""
    starts = (b * (2 * tile + gap) + j * tile for b in range(length // tile + 1) for j in (0, 1))
    return [s for s in starts if s + tile <= length]


def _tile_records(*, tile: int, gap: int, min_fraction: float) -> list[dict]:
    """Tiles of the bundled skimage images; a group is a 2x2 block of touching tiles."""
    rows = []
    for name, modality in _SKIMAGE:
        image = _skimage_image(name)
        common = {
            "modality": modality,
            "source": "embedded",
            "source_name": f"skimage_{name}",
            "stack": name,
        }
        if min(image.shape[:2]) < 2 * tile:  # too small for a block (microaneurysms, 102 px)
            rows.append(
                _row(
                    image_id=f"embedded:skimage:{name}",
                    group=f"embedded:skimage:{name}",
                    path=f"skimage:{name}",
                    **common,
                )
            )
            continue
        ys, xs = (_tile_starts(n, tile, gap) for n in image.shape[:2])
        for (r, y), (c, x) in itertools.product(enumerate(ys), enumerate(xs)):
            bright = image[y : y + tile, x : x + tile].max(axis=-1) > 20
            if bright.mean() < min_fraction:  # the black surround of the fundus photograph
                continue
            rows.append(
                _row(
                    image_id=f"embedded:skimage:{name}:r{r}c{c}",
                    group=f"embedded:skimage:{name}:block{r // 2}-{c // 2}",
                    axis="tile",
                    pos=r,
                    pos2=c,
                    unit="tile",
                    path=f"skimage:{name}[{y}:{y + tile},{x}:{x + tile}]",
                    **common,
                )
            )
    return rows


def _embedded_pixels(row) -> np.ndarray:
    match = _SKIMAGE_PATH.match(row.path)
    if match:
        image = _skimage_image(match[1])
        if match[2] is None:
            return image
        y0, y1, x0, x1 = (int(v) for v in match.groups()[1:])
        return image[y0:y1, x0:x1]
    frame = int(row.stack[1:]) if row.stack_kind == "frame" else 0
    return _gray_to_rgb(_volume_slice(_volume(row.path), row.axis, row.pos, frame=frame))


# ---------------------------------------------------------------------------------------------
# Source "haxby": block-averaged BOLD volumes of Haxby et al. (2001)


@dataclass(frozen=True)
class _Block:
    subject: str
    run: str
    index: int  # block number within the run
    label: str
    start: int  # first volume
    stop: int  # one past the last volume


@dataclass(frozen=True)
class _HaxbyFile:
    blocks: tuple[_Block, ...]
    means: dict  # (run, block index) -> uint8 (x, y, z) mean volume, RAS voxel order
    z_origin: float
    z_zoom: float


def _haxby_records(root=None, *, on_error="raise", subjects=(1,), bold=None, slices=3):
    """One image per stimulus block (mean of its volumes); a few axial slices if 3-D."""
    rows = []
    for path in _haxby_bold_files(root, subjects=subjects, bold=bold):
        series = _haxby_file(str(path))
        n_z = next(iter(series.means.values())).shape[2]
        for block, z in itertools.product(series.blocks, _central_slices(n_z, slices)):
            suffix = "" if z is None else f":z{z:02d}"
            rows.append(
                _row(
                    image_id=f"haxby:{block.subject}:{block.run}:block{block.index:02d}:"
                    f"{block.label}{suffix}",
                    group=f"haxby:{block.subject}:{block.run}",
                    modality="fmri_bold",
                    source="haxby",
                    source_name="haxby2001",
                    stack=block.run,
                    axis="time",
                    pos=block.index,
                    pos2=0.0 if z is None else series.z_origin + z * series.z_zoom,
                    unit="block",
                    path=str(path),
                )
            )
    return rows


def _central_slices(n_z: int, n: int) -> list[int | None]:
    """``[None]`` for single-slice data, else ``n`` axial slices spread over the middle 40%."""
    if n_z == 1:
        return [None]
    return sorted({int(round(f * (n_z - 1))) for f in np.linspace(0.3, 0.7, n)})


def _haxby_bold_files(root, *, subjects, bold) -> list[Path]:
    """BOLD files in nilearn's layout (``subjN/bold.nii.gz`` + ``labels.txt``) or OpenFMRI's."""
    if root is None:
        from nilearn import datasets

        return [Path(p) for p in datasets.fetch_haxby(subjects=subjects, verbose=0).func]
    root = _existing_dir(root, "haxby")
    found = [p.with_name("bold.nii.gz") for p in sorted(root.rglob("labels.txt"))]
    found = [p for p in found if p.is_file()]
    names = [bold] if bold else ["bold.nii.gz", "bold_1slice.nii.gz"]
    for run_dir in sorted(root.glob("sub*/BOLD/task*_run*")):
        path = next((run_dir / n for n in names if (run_dir / n).is_file()), None)
        if path is None:
            raise FileNotFoundError(f"haxby: {run_dir} holds none of {names}")
        found.append(path)
    if not found:
        raise FileNotFoundError(
            f"haxby: no runs under {root}; expected sub*/BOLD/task*_run*/bold*.nii.gz "
            "(OpenFMRI) or subj*/bold.nii.gz with labels.txt (nilearn)"
        )
    return found


@lru_cache(maxsize=4)
def _haxby_file(bold: str) -> _HaxbyFile:
    img = nib.as_closest_canonical(nib.load(bold))
    if img.ndim != 4:
        raise ValueError(f"haxby: {bold} is not a 4-D BOLD series (shape {img.shape})")
    blocks = _haxby_blocks(Path(bold), n_volumes=img.shape[3], tr=_repetition_time(img, bold))
    series = img.get_fdata(dtype=np.float32)
    means = {}
    for run in dict.fromkeys(b.run for b in blocks):
        run_blocks = [b for b in blocks if b.run == run]
        # One intensity scale per run, so the blocks of a run stay comparable.
        stack = _to_uint8(np.stack([series[..., b.start : b.stop].mean(-1) for b in run_blocks]))
        means.update(
            {(b.run, b.index): volume for b, volume in zip(run_blocks, stack, strict=True)}
        )
    zooms = img.header.get_zooms()
    return _HaxbyFile(
        blocks=tuple(blocks), means=means, z_origin=float(img.affine[2, 3]), z_zoom=float(zooms[2])
    )


def _repetition_time(img, bold: str) -> float:
    tr = float(img.header.get_zooms()[3])
    if img.header.get_xyzt_units()[1] == "msec":
        tr /= 1000
    if tr <= 0:
        raise ValueError(f"haxby: {bold} has no repetition time in its header")
    return tr


def _haxby_blocks(bold: Path, *, n_volumes: int, tr: float) -> list[_Block]:
    labels = bold.with_name("labels.txt")
    if labels.is_file():
        blocks = _blocks_from_labels(labels, subject=bold.parent.name, n_volumes=n_volumes)
    else:
        run = re.search(r"run(\d+)", bold.parent.name)
        name = f"run{run[1]}" if run else bold.parent.name
        events = _openfmri_events(bold.parent)
        blocks = [
            _Block(
                subject=bold.parents[2].name,
                run=name,
                index=i,
                label=label,
                start=round(onset / tr),
                stop=min(round((onset + duration) / tr), n_volumes),
            )
            for i, (onset, duration, label) in enumerate(events)
        ]
    empty = [b for b in blocks if b.stop <= b.start]
    if empty:
        raise ValueError(f"haxby: blocks outside the {n_volumes} volumes of {bold}: {empty[:3]}")
    return blocks


def _blocks_from_labels(path: Path, *, subject: str, n_volumes: int) -> list[_Block]:
    """Blocks of nilearn's ``labels.txt``: runs of one non-rest label within one chunk."""
    table = pd.read_csv(path, sep=r"\s+")
    if len(table) != n_volumes or not {"labels", "chunks"} <= set(table.columns):
        raise ValueError(f"haxby: {path} needs columns labels, chunks and {n_volumes} rows")
    labels, chunks = table["labels"].astype(str).to_numpy(), table["chunks"].to_numpy()
    change = np.flatnonzero((labels[1:] != labels[:-1]) | (chunks[1:] != chunks[:-1])) + 1
    blocks, count = [], Counter()
    for start, stop in zip(np.r_[0, change], np.r_[change, len(labels)], strict=True):
        if labels[start] == "rest":
            continue
        run = f"run{int(chunks[start]) + 1:03d}"
        blocks.append(
            _Block(
                subject=subject,
                run=run,
                index=count[run],
                label=labels[start],
                start=int(start),
                stop=int(stop),
            )
        )
        count[run] += 1
    return blocks


def _openfmri_events(run_dir: Path) -> list[tuple[float, float, str]]:
    """``(onset, duration, label)`` sorted by onset, from ``bold_events.tsv`` or onset files."""
    tsv = run_dir / "bold_events.tsv"
    if tsv.is_file():
        table = pd.read_csv(tsv, sep="\t")
        if not {"onset", "duration", "trial_type"} <= set(table.columns):
            raise ValueError(f"haxby: {tsv} needs columns onset, duration, trial_type")
        triples = zip(
            table["onset"], table["duration"], table["trial_type"].astype(str), strict=True
        )
        return sorted((float(o), float(d), t) for o, d, t in triples)
    # OpenFMRI without the tsv: models/model001/condition_key.txt names the cond*.txt files.
    key = run_dir.parents[2] / "models" / "model001" / "condition_key.txt"
    onsets = run_dir.parents[1] / "model" / "model001" / "onsets" / run_dir.name
    if not key.is_file() or not onsets.is_dir():
        raise FileNotFoundError(f"haxby: no events for {run_dir}: need {tsv}, or {key} + {onsets}")
    task = run_dir.name.split("_")[0]
    lines = (line.split(maxsplit=2) for line in key.read_text().splitlines() if line.strip())
    names = {cond: label.strip() for t, cond, label in lines if t == task}
    events = []
    for file in sorted(onsets.glob("cond*.txt")):
        events += [
            (float(r[0]), float(r[1]), names.get(file.stem, file.stem))
            for r in np.loadtxt(file, ndmin=2)
        ]
    return sorted(events)


def _haxby_pixels(row) -> np.ndarray:
    series = _haxby_file(row.path)
    volume = series.means[(row.stack, int(row.pos))]
    z = 0 if volume.shape[2] == 1 else int(round((row.pos2 - series.z_origin) / series.z_zoom))
    return _gray_to_rgb(np.rot90(volume[:, :, z]))


# ---------------------------------------------------------------------------------------------
# Sources of image files: "folder", "dsb2018", "bccd"


def _group_key(group_by: str, pattern: str | None) -> Callable[[Path, Path], str]:
    """Function ``(file, root) -> group key`` for the ``folder`` source."""
    if group_by == "subfolder":
        return lambda path, root: path.parent.relative_to(root).as_posix()
    if group_by == "file":
        return lambda path, root: path.relative_to(root).with_suffix("").as_posix()
    if group_by != "regex":
        raise ValueError(f"group_by must be 'subfolder', 'regex' or 'file', got {group_by!r}")
    regex = re.compile(pattern or "")
    if regex.groups < 1:
        raise ValueError(f"group_by='regex' needs a pattern with a capture group, got {pattern!r}")

    def key(path: Path, root: Path) -> str:
        match = regex.search(path.name)
        if match is None:
            raise ValueError(f"folder: file name {path} does not match pattern {pattern!r}")
        return match[1]

    return key


def _folder_records(
    root=None,
    *,
    on_error="raise",
    group_by="subfolder",
    pattern=None,
    modality="unknown",
    name=None,
    limit=None,
    pages="all",
    validate=True,
) -> list[dict]:
    """Any folder of images, grouped by sub-folder, by a file-name regex, or per file."""
    if root is None:
        raise ValueError("the folder source needs root=<directory of images>")
    root = _existing_dir(root, "folder")
    name, key = name or root.name, _group_key(group_by, pattern)
    found = _scan_images(root, on_error=on_error, validate=validate, limit=limit, pages=pages)
    rows = []
    for path, page, n_pages in found:
        group, paged = key(path, root), n_pages > 1
        rows.append(
            _row(
                image_id=f"folder:{name}/{path.relative_to(root).as_posix()}"
                + (f"#p{page}" if paged else ""),
                group=f"folder:{name}/{group}",
                modality=modality,
                source="folder",
                source_name=name,
                stack=group,
                axis="page" if paged else "",
                pos=page,
                unit="page" if paged else "",
                path=str(path),
            )
        )
    return rows


def _dsb_records(root=None, *, on_error="raise", limit=None, sibling_threshold=0.3):
    """DSB2018 stage-1 images; likely tiles of one acquisition share a group.

    Modality comes from colour: dark background -> ``fluorescence``, coloured ->
    ``histology_he``, else ``microscopy_brightfield``. Siblings: within one (shape, modality),
    average-linkage clusters of log intensity statistics closer than ``sibling_threshold``.
    """
    root = _fetch("dsb2018") if root is None else _existing_dir(root, "dsb2018")
    found = _scan_images(
        root,
        on_error=on_error,
        validate=False,
        limit=limit,
        pages="first",
        glob="*.png",
        exclude=("masks",),
    )
    stats = []
    for path, _, _ in found:
        try:
            stats.append((path, *_dsb_stats(read_image_file(path))))
        except ImageReadError as exc:
            _handle(exc, on_error)
    table = pd.DataFrame(stats, columns=["path", "shape", "modality", "features"])
    table["cluster"] = 0
    for _, part in table.groupby(["shape", "modality"]):
        table.loc[part.index, "cluster"] = _clusters(np.stack(part["features"]), sibling_threshold)
    rows = []
    for t in table.itertuples():
        stack = f"{t.shape}:{t.cluster:03d}"
        rows.append(
            _row(
                image_id=f"dsb2018:{t.path.stem}",
                group=f"dsb2018:{stack}:{t.modality}",
                modality=t.modality,
                source="dsb2018",
                source_name="bbbc038_stage1_train",
                stack=stack,
                path=str(t.path),
            )
        )
    return rows


def _dsb_stats(image: np.ndarray) -> tuple[str, str, np.ndarray]:
    """Shape key, modality and log intensity statistics of one DSB image."""
    shape = f"{image.shape[0]}x{image.shape[1]}"
    step = max(1, int((image.shape[0] * image.shape[1] / 2**16) ** 0.5))
    # ~65k pixels are plenty for statistics; channel-wise arithmetic beats axis=-1 reductions.
    red, green, blue = np.moveaxis(image[::step, ::step].astype(np.float32), -1, 0)
    gray = (red + green + blue) / 3
    colour = float((abs(red - gray) + abs(green - gray) + abs(blue - gray)).mean()) / 3
    low, median, high = np.percentile(gray, [5, 50, 99])
    if median < 80:  # dark background: stained nuclei glowing on black
        modality = "fluorescence"
    else:  # light background: H&E stains are purple/pink, bright-field is gray
        modality = "histology_he" if colour >= 3 else "microscopy_brightfield"
    features = np.log1p([low, median, high, red.mean(), green.mean(), blue.mean()])
    return shape, modality, features


def _clusters(features: np.ndarray, threshold: float) -> np.ndarray:
    if len(features) < 2:
        return np.ones(len(features), dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage

    return fcluster(linkage(features, method="average"), t=threshold, criterion="distance")


def _bccd_records(root=None, *, on_error="raise", limit=None, block=10, validate=True):
    """BCCD smear photographs; consecutive captures (file number // block) share a group."""
    root = _fetch("bccd") if root is None else _existing_dir(root, "bccd")
    found = _scan_images(
        root, on_error=on_error, validate=validate, limit=limit, pages="first", glob="BloodImage_*"
    )
    rows = []
    for path, _, _ in found:
        frame = int(re.search(r"(\d+)$", path.stem)[1])
        rows.append(
            _row(
                image_id=f"bccd:{path.stem}",
                group=f"bccd:smear{frame // block:03d}",
                modality="blood_smear",
                source="bccd",
                source_name="bccd",
                stack="smear",
                axis="time",
                pos=frame,
                unit="frame",
                path=str(path),
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Downloads


def _fetch(name: str) -> Path:
    """Folder of the unpacked public archive ``name``, downloaded into ``paths.RAW`` once."""
    archive = _ARCHIVES[name]
    folder = paths.RAW / name
    unpacked, done = folder / "extracted", folder / "extracted.done"
    if not done.is_file():
        zip_path = download(archive.url, folder / archive.filename, sha256=archive.sha256)
        _extract(zip_path, unpacked)
        done.touch()
    return unpacked


def _extract(archive: Path, out: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():  # refuse "../" members (zip slip)
                if not (out / member).resolve().is_relative_to(out.resolve()):
                    raise DownloadError(f"{archive}: member {member!r} escapes {out}")
            zf.extractall(out)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive} is not a valid zip ({exc}); delete it and retry") from exc


def _stream(url: str, part: Path, *, progress: bool) -> str:
    """Copy ``url`` into ``part`` with a progress bar; returns the sha256 hex digest."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=part.name, disable=not progress)
        with bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected, *, source: str, remove: bool, digest=None) -> None:
    if expected is None:
        return
    digest = digest or _sha256(path)
    if digest != expected.lower():
        if remove:
            path.unlink(missing_ok=True)
        raise ChecksumError(
            f"sha256 of {source} is {digest}, expected {expected}"
            + ("" if remove else f"; delete {path} to download it again")
        )


_SOURCES = {
    "embedded": _embedded_records,
    "haxby": _haxby_records,
    "folder": _folder_records,
    "dsb2018": _dsb_records,
    "bccd": _bccd_records,
}
