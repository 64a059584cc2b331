"""Every path the project uses, resolved from the package file, never from the working directory.

papermill runs a kernel in the caller's directory and nbval in the notebook's folder, so a path
relative to the working directory would point somewhere else in each. Environment variables
override the defaults so users (and CI) can point the same code at their own folders.

A run owns its outputs: everything a run makes (processed data, pairs, figures, tables, models,
predictions) lives under its run folder, ``runs/<name>/``. Only downloads, which are inputs,
are cached outside runs, in ``data/raw``. ``PROCESSED`` and ``FIGURES`` are therefore looked
up on every access (module ``__getattr__``): the pipeline sets ``BFUTILS_RUN_DIR`` for each
run, and a process that switches runs sees the new folders.
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
"""Download cache (inputs, shared by all runs; git-ignored)."""
RUNS = _env_path("BFUTILS_RUNS", ROOT / "runs")
NOTEBOOKS = ROOT / "notebooks"
PARAMS = ROOT / "params"
PUBLISHED_FIGURES = ROOT / "figures"
"""Where ``python -m bfutils.runs publish`` copies one run's figures and tables (on request)."""

SHARED_DATA = _env_path("BFUTILS_SHARED_DATA", ROOT.parent / "shared" / "data")
"""Read-only real data beside the project (``../shared/data``); never copied into the repo."""


def shared(name: str) -> Path:
    """Path of a folder in the shared read-only data, e.g. ``shared("dsb2018")``."""
    return SHARED_DATA / name


def current_run() -> Path:
    """The active run folder, without creating it (see :func:`run_dir`)."""
    return _env_path("BFUTILS_RUN_DIR", RUNS / "interactive")


def run_dir(name: str | None = None) -> Path:
    """The run folder that notebooks write predictions, checkpoints, data and figures into.

    ``BFUTILS_RUN_DIR`` (set by :mod:`bfutils.pipeline`) wins; otherwise ``runs/<name>``,
    default ``runs/interactive`` for people stepping through the notebooks in JupyterLab.
    """
    path = _env_path("BFUTILS_RUN_DIR", RUNS / (name or "interactive"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def __getattr__(name: str) -> Path:
    # PEP 562: PROCESSED and FIGURES follow the active run folder at every access.
    if name == "PROCESSED":
        return current_run() / "data"
    if name == "FIGURES":
        return _env_path("BFUTILS_FIGURES", current_run() / "figures")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ensure_dirs() -> None:
    """Create the download cache and the active run's data and figure folders."""
    for p in (RAW, __getattr__("PROCESSED"), __getattr__("FIGURES")):
        p.mkdir(parents=True, exist_ok=True)
