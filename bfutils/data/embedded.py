"""Source ``embedded``: MNI152 templates, nibabel's example EPI and scikit-image images.

Everything ships with the installed packages, so this source works offline. A group is a slab
of neighbouring slices (in all three MNI tissues, or both EPI frames) or a 2x2 block of
touching tiles of a scikit-image picture; slabs and blocks are separated by gaps.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

from bfutils.data.pixels import gray_to_rgb, to_uint8
from bfutils.data.schema import row

AXES = ("sagittal", "coronal", "axial")  # voxel axes 0, 1, 2 of a volume in RAS orientation

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


def records(
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
    """Rows of every slice and tile (see ``load_records`` for the options)."""
    if root is not None:
        raise ValueError("the embedded source ships with the packages and takes no root")
    slabbing = {"slab": slab, "gap": gap, "min_fraction": min_fraction}
    return (
        _mni_records(**slabbing)
        + _epi_records(**slabbing)
        + _tile_records(tile=tile, gap=tile_gap, min_fraction=tile_min_fraction)
    )


def pixels(record) -> np.ndarray:
    """Native-resolution RGB uint8 pixels of one record of this source."""
    match = _SKIMAGE_PATH.match(record.path)
    if match:
        image = _skimage_image(match[1])
        if match[2] is None:
            return image
        y0, y1, x0, x1 = (int(v) for v in match.groups()[1:])
        return image[y0:y1, x0:x1]
    frame = int(record.stack[1:]) if record.stack_kind == "frame" else 0
    volume = _volume(record.path)
    return gray_to_rgb(_volume_slice(volume, record.axis, record.pos, frame=frame))


# ---------------------------------------------------------------------------------------------
# Volumes: MNI152 templates and the example EPI


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
    data = to_uint8(img.get_fdata(dtype=np.float32))  # one scale per volume
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


def _mni_records(**slabbing) -> list[dict]:
    """Slices of the T1, gm and wm templates; one group = one slab in all three tissues.

    Sagittal slices are taken from the left hemisphere and the midline only (x <= 0 mm): the
    templates are left-right symmetric to the voxel, so the slices at x and -x are the same
    picture, and keeping both put pixel twins under two names in different groups and splits.
    """
    vols = {stack: _volume(resource) for stack, resource, _ in _MNI}
    brain = vols["T1"].data > _BRAIN_LEVEL  # same slices kept in every tissue
    rows = []
    for ax, axis in enumerate(AXES):
        fraction = brain.mean(axis=tuple(a for a in range(3) if a != ax))
        for index, k in _slabs(fraction, **slabbing).items():
            if axis == "sagittal" and _slice_pos(vols["T1"], ax, index) > 0:
                continue  # the mirror image of a slice at -x
            for stack, resource, modality in _MNI:
                rows.append(
                    row(
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
                row(
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


# ---------------------------------------------------------------------------------------------
# Tiles of scikit-image pictures


@lru_cache(maxsize=8)
def _skimage_image(name: str) -> np.ndarray:
    import skimage.data

    image = gray_to_rgb(np.asarray(getattr(skimage.data, name)()))
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
                row(
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
                row(
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
