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


def _env_path(name: str, default: Path) -> Path:
    """A folder from an environment variable; a relative value is taken from the project root."""
    value = os.environ.get(name)
    return (
        default if not value else (ROOT / value if not Path(value).is_absolute() else Path(value))
    )


DATA = _env_path("BFUTILS_DATA", ROOT / "data")
RAW = DATA / "raw"
PROCESSED = DATA / "processed"
FIGURES = _env_path("BFUTILS_FIGURES", ROOT / "figures")
RUNS = _env_path("BFUTILS_RUNS", ROOT / "runs")
NOTEBOOKS = ROOT / "notebooks"
PARAMS = ROOT / "params"

SHARED_DATA = _env_path("BFUTILS_SHARED_DATA", ROOT.parent / "shared" / "data")
"""Read-only real data beside the project (``../shared/data``); never copied into the repo."""


def shared(name: str) -> Path:
    """Path of a folder in the shared read-only data, e.g. ``shared("dsb2018")``."""
    return SHARED_DATA / name


def run_dir(name: str | None = None) -> Path:
    """The run folder that notebooks write predictions, checkpoints and logs into.

    ``BFUTILS_RUN_DIR`` (set by :mod:`bfutils.pipeline`) wins; otherwise ``runs/<name>``,
    default ``runs/interactive`` for people stepping through the notebooks in JupyterLab.
    """
    path = _env_path("BFUTILS_RUN_DIR", RUNS / (name or "interactive"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_dirs() -> None:
    """Create the derived-data folders (all git-ignored and re-creatable)."""
    for p in (RAW, PROCESSED, FIGURES, RUNS):
        p.mkdir(parents=True, exist_ok=True)
