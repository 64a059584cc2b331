"""Data shared by tests: small synthetic images, and the real data sets resolved for this machine.

Real data (:func:`real_data`, behind the ``shared_data`` fixture of ``conftest.py``) is looked up
in this order: the read-only copy in ``BFUTILS_SHARED_DATA`` or ``../shared/data``; else a copy
the project's downloaders cached in ``data/raw``; else a download when the host answers within
a few seconds; else the test is skipped with a reason that says how to get the data. Under CI
(``CI=true``) a missing folder fails instead: CI always has ``../shared/data``.
"""

from __future__ import annotations

import os
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bfutils import paths
from bfutils.data import downloads


def synthetic(n_groups=12, per_group=6, size=32, seed=0):
    """A manifest of slab-like groups (slices 2 mm apart, two tissues) and random images."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for k in range(per_group):
            rows.append({
                "image_id": f"syn:{g}:{k}", "group": f"syn:g{g}", "source": "syn",
                "modality": "mri" if g % 2 else "tiles",
                "stack": "T1" if k % 2 else "gm", "stack_kind": "tissue", "axis": "axial",
                "pos": float(g * 20 + 2 * (k // 2)), "pos2": 0.0, "unit": "mm",
            })  # fmt: skip
    images = rng.integers(0, 256, size=(len(rows), size, size, 3), dtype=np.uint8)
    return pd.DataFrame(rows), images


# ---------------------------------------------------------------------------------------------
# Real data


@dataclass(frozen=True)
class RealData:
    """How to get one folder of ``../shared/data`` when it is missing."""

    url: str  # probed before downloading
    marker: str  # under paths.RAW, present once a download completed (then no probe is needed)
    fetch: Callable[[], Path]  # downloads into paths.RAW once; returns the folder to read


def _fetch_haxby() -> Path:
    # What the haxby source fetches without a root (the full subject 1, ~300 MB, in nilearn's
    # layout), cached in data/raw rather than ~/nilearn_data.
    from nilearn import datasets

    bold = datasets.fetch_haxby(data_dir=paths.RAW, subjects=(1,), verbose=0).func[0]
    return Path(bold).parents[1]


REAL_DATA = {
    "dsb2018": RealData(
        url=downloads.DSB2018_URL,
        marker="dsb2018/extracted.done",
        fetch=lambda: downloads.fetch("dsb2018"),
    ),
    "bccd": RealData(
        url=downloads.BCCD_URL,
        marker="bccd/extracted.done",
        fetch=lambda: downloads.fetch("bccd") / "BCCD_Dataset-master" / "BCCD" / "JPEGImages",
    ),
    "haxby2001-subset": RealData(
        url="http://data.pymvpa.org/datasets/haxby2001/",  # nilearn.datasets.fetch_haxby's host
        marker="haxby2001/subj1/labels.txt",
        fetch=_fetch_haxby,
    ),
}


@cache
def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether ``url`` answers a HEAD request within ``timeout`` seconds, name lookup included."""
    answers = []

    def probe():
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, method="HEAD"), timeout=timeout
            ):
                answers.append(True)
        except (OSError, ValueError):  # URLError, HTTPError, timeouts; ValueError: bad URL
            pass

    # The socket timeout does not cover the name lookup: a thread bounds the whole probe.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answers)


def real_data(
    name: str,
    *,
    shared: Path | None = None,
    raw: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    known: Mapping[str, RealData] = REAL_DATA,
    probe: Callable[[str], bool] = reachable,
) -> Path:
    """Folder of the real data set ``name`` (a folder of ``../shared/data``), or skip or fail.

    Args:
        name: Folder name in the shared data, e.g. ``"dsb2018"``.
        shared: The shared data folder; default :data:`bfutils.paths.SHARED_DATA`.
        raw: The download cache; default :data:`bfutils.paths.RAW`.
        environ: Environment to read ``CI`` from.
        known: How to download each data set.
        probe: ``url -> bool``, whether the internet answers.

    Raises:
        pytest.fail.Exception: The folder is missing under CI.
        pytest.skip.Exception: The folder is missing and could not be downloaded.
    """
    shared = paths.SHARED_DATA if shared is None else shared
    raw = paths.RAW if raw is None else raw
    folder = shared / name
    if folder.is_dir():
        return folder
    if environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(
            f"real data {name!r} missing: {folder} is not a folder. CI must provide "
            "../shared/data beside the project (or BFUTILS_SHARED_DATA).",
            pytrace=False,
        )
    how = (
        f"real data {name!r} not found at {folder}; set BFUTILS_SHARED_DATA=/path/to/shared/data "
        f"or connect to the internet to let the tests download it (cached in {raw})"
    )
    source = known[name]
    if not (raw / source.marker).exists() and not probe(source.url):
        pytest.skip(f"{how}. No answer from {source.url}.")
    try:
        return source.fetch()
    except (OSError, downloads.DownloadError) as exc:
        pytest.skip(f"{how}. The download failed: {exc}")
