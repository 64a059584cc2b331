"""Source ``haxby``: block-averaged BOLD volumes of Haxby et al. (2001).

One image per stimulus block (the mean of its volumes), a few axial slices of it when the data
is 3-D; a group is one run. Reads nilearn's layout (``subjN/bold.nii.gz`` + ``labels.txt``) or
OpenFMRI's (``sub*/BOLD/task*_run*/bold*.nii.gz`` with events), or fetches with nilearn.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bfutils.data.files import existing_dir
from bfutils.data.pixels import gray_to_rgb, to_uint8
from bfutils.data.schema import row


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


def records(root=None, *, on_error="raise", subjects=(1,), bold=None, slices=3) -> list[dict]:
    """One image per stimulus block (mean of its volumes); a few axial slices if 3-D."""
    rows = []
    for path in _bold_files(root, subjects=subjects, bold=bold):
        series = _haxby_file(str(path))
        n_z = next(iter(series.means.values())).shape[2]
        for block, z in itertools.product(series.blocks, _central_slices(n_z, slices)):
            suffix = "" if z is None else f":z{z:02d}"
            rows.append(
                row(
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


def pixels(record) -> np.ndarray:
    """Native-resolution RGB uint8 pixels of one record of this source."""
    series = _haxby_file(record.path)
    volume = series.means[(record.stack, int(record.pos))]
    z = 0 if volume.shape[2] == 1 else int(round((record.pos2 - series.z_origin) / series.z_zoom))
    return gray_to_rgb(np.rot90(volume[:, :, z]))


def _central_slices(n_z: int, n: int) -> list[int | None]:
    """``[None]`` for single-slice data, else ``n`` axial slices spread over the middle 40%."""
    if n_z == 1:
        return [None]
    return sorted({int(round(f * (n_z - 1))) for f in np.linspace(0.3, 0.7, n)})


def _bold_files(root, *, subjects, bold) -> list[Path]:
    """BOLD files in nilearn's layout (``subjN/bold.nii.gz`` + ``labels.txt``) or OpenFMRI's."""
    if root is None:
        from nilearn import datasets

        return [Path(p) for p in datasets.fetch_haxby(subjects=subjects, verbose=0).func]
    root = existing_dir(root, "haxby")
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
    blocks = _blocks(Path(bold), n_volumes=img.shape[3], tr=_repetition_time(img, bold))
    series = img.get_fdata(dtype=np.float32)
    means = {}
    for run in dict.fromkeys(b.run for b in blocks):
        run_blocks = [b for b in blocks if b.run == run]
        # One intensity scale per run, so the blocks of a run stay comparable.
        stack = to_uint8(np.stack([series[..., b.start : b.stop].mean(-1) for b in run_blocks]))
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


def _blocks(bold: Path, *, n_volumes: int, tr: float) -> list[_Block]:
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
