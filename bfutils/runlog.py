"""Freeze, seed, log: the one call every notebook makes in its second cell."""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from bfutils import paths

PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "numpy",
    "pandas",
    "scikit-learn",
    "scikit-image",
    "nilearn",
    "nibabel",
    "opencv-python-headless",
    "imagededup",
    "papermill",
)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    import torch

    torch.manual_seed(seed)  # also seeds every CUDA device


def resolve_device(device: str = "auto") -> str:
    """Map ``auto`` to ``cuda``, then ``mps``, then ``cpu``; check an explicit choice exists."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for, but torch sees no CUDA device")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} asked for, but MPS is not available")
    if kind not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda[:N] or mps")
    return device


def git_commit() -> str:
    """The project's current git commit, or ``unknown`` outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=paths.ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment() -> dict:
    """Package versions, python, platform and git commit, for the run record."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": git_commit(),
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@dataclass
class Run:
    """What :func:`start` hands back to a notebook."""

    name: str
    params: dict
    device: str
    dir: Path

    def path(self, filename: str) -> Path:
        """A file inside the run folder."""
        return self.dir / filename


def start(name: str, params: dict, required: dict[str, type] | None = None) -> Run:
    """Validate parameters, seed everything, resolve the device and write the run record.

    Args:
        name: the notebook's short name (used in the record's file name).
        params: the notebook's parameters (literal values from the papermill cell).
        required: optional ``{name: type}`` the parameters must satisfy; a missing name or a
            value of the wrong type raises ``ValueError`` naming it.

    Returns:
        A :class:`Run` with the resolved device and the run folder.
    """
    for key, typ in (required or {}).items():
        if key not in params:
            raise ValueError(f"parameter {key!r} is missing")
        if not isinstance(params[key], typ) or (typ is int and isinstance(params[key], bool)):
            raise ValueError(
                f"parameter {key!r} must be {typ.__name__}, got {type(params[key]).__name__}"
            )
    seed = int(params.get("seed", 0))
    seed_everything(seed)
    device = resolve_device(str(params.get("device", "cpu")))
    paths.ensure_dirs()
    run_dir = paths.run_dir()
    record = {"notebook": name, "params": params, "device": device, **environment()}
    (run_dir / f"params_{name}.json").write_text(json.dumps(record, indent=2, default=str))
    return Run(name=name, params=dict(params), device=device, dir=run_dir)
