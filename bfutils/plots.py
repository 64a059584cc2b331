"""Saving figures: every PNG gets the data it plots as a CSV beside it."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from bfutils import paths


def save(fig, name: str, data: pd.DataFrame, folder: Path | None = None) -> Path:
    """Save ``fig`` as ``<name>.png`` and ``data`` as ``<name>.csv`` in ``figures/``.

    Args:
        fig: a matplotlib figure.
        name: file stem, e.g. ``"01_gallery"``.
        data: the numbers or records the figure shows.
        folder: override for the output folder (default :data:`bfutils.paths.FIGURES`).

    Returns:
        Path of the PNG.
    """
    folder = Path(folder or paths.FIGURES)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    data.to_csv(folder / f"{name}.csv", index=False)
    plt.close(fig)
    return png
