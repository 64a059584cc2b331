"""Every path the project uses, resolved from the package file, never from the working directory.

papermill runs a kernel in the caller's directory and nbval in the notebook's folder, so a path
relative to the working directory would point somewhere else in each. Environment variables
override the defaults so users (and CI) can point the same code at their own folders.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""Project root (the folder holding ``pyproject.toml``)."""

DATA = Path(os.environ.get("BFUTILS_DATA", ROOT / "data"))
RAW = DATA / "raw"
PROCESSED = DATA / "processed"
FIGURES = Path(os.environ.get("BFUTILS_FIGURES", ROOT / "figures"))
RUNS = Path(os.environ.get("BFUTILS_RUNS", ROOT / "runs"))
NOTEBOOKS = ROOT / "notebooks"
PARAMS = ROOT / "params"

SHARED_DATA = Path(os.environ.get("BFUTILS_SHARED_DATA", ROOT.parent / "shared" / "data"))
"""Read-only real data beside the project (``../shared/data``); never copied into the repo."""


def shared(name: str) -> Path:
    """Path of a folder in the shared read-only data, e.g. ``shared("dsb2018")``."""
    return SHARED_DATA / name


def run_dir(name: str | None = None) -> Path:
    """The run folder that notebooks write predictions, checkpoints and logs into.

    ``BFUTILS_RUN_DIR`` (set by :mod:`bfutils.pipeline`) wins; otherwise ``runs/<name>``,
    default ``runs/interactive`` for people stepping through the notebooks in JupyterLab.
    """
    env = os.environ.get("BFUTILS_RUN_DIR")
    path = Path(env) if env else RUNS / (name or "interactive")
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_dirs() -> None:
    """Create the derived-data folders (all git-ignored and re-creatable)."""
    for p in (RAW, PROCESSED, FIGURES, RUNS):
        p.mkdir(parents=True, exist_ok=True)
