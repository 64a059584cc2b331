"""Sources of image files: ``folder`` (any folder), ``dsb2018`` and ``bccd``.

``dsb2018`` and ``bccd`` read a local copy when given ``root`` and otherwise download their
public archive once (:func:`bfutils.data.downloads.fetch`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bfutils.data import downloads
from bfutils.data.files import ImageReadError, existing_dir, handle, read_image_file, scan_images
from bfutils.data.schema import row


def folder_records(
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
    root = existing_dir(root, "folder")
    name, key = name or root.name, _group_key(group_by, pattern)
    found = scan_images(root, on_error=on_error, validate=validate, limit=limit, pages=pages)
    rows = []
    for path, page, n_pages in found:
        group, paged = key(path, root), n_pages > 1
        rows.append(
            row(
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


def dsb_records(root=None, *, on_error="raise", limit=None, sibling_threshold=0.3) -> list[dict]:
    """DSB2018 stage-1 images; likely tiles of one acquisition share a group.

    Modality comes from colour: dark background -> ``fluorescence``, coloured ->
    ``histology_he``, else ``microscopy_brightfield``. Siblings: within one (shape, modality),
    average-linkage clusters of log intensity statistics closer than ``sibling_threshold``.
    """
    root = downloads.fetch("dsb2018") if root is None else existing_dir(root, "dsb2018")
    found = scan_images(
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
            handle(exc, on_error)
    table = pd.DataFrame(stats, columns=["path", "shape", "modality", "features"])
    table["cluster"] = 0
    for _, part in table.groupby(["shape", "modality"]):
        table.loc[part.index, "cluster"] = _clusters(np.stack(part["features"]), sibling_threshold)
    rows = []
    for t in table.itertuples():
        stack = f"{t.shape}:{t.cluster:03d}"
        rows.append(
            row(
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


def bccd_records(root=None, *, on_error="raise", limit=None, block=10, validate=True) -> list[dict]:
    """BCCD smear photographs; consecutive captures (file number // block) share a group."""
    root = downloads.fetch("bccd") if root is None else existing_dir(root, "bccd")
    found = scan_images(
        root, on_error=on_error, validate=validate, limit=limit, pages="first", glob="BloodImage_*"
    )
    rows = []
    for path, _, _ in found:
        frame = int(re.search(r"(\d+)$", path.stem)[1])
        rows.append(
            row(
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
