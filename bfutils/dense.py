"""Dense search for a small panel inside larger ones (normalised cross-correlation).

A thin strip of a panel (a 40 x 14 px band, a row of cells) shown on its own in a figure is
Bik et al.'s category II reuse at its smallest, and the finder's keypoints miss it: shrunk and
re-compressed, the strip keeps few SIFT or XFeat keypoints that repeat in its source
(``benchmarks/thin_strips.py``: a 40 x 14 px strip cut from a panel is at rank 1 for about
one in six). Its grey levels survive: slid over the panels of that benchmark, it correlates
best with its source for 0.90 of such strips.

:func:`best_match` slides the strip, shrunk to :data:`SCALES` of the larger panel's width,
over every position of it (OpenCV's ``matchTemplate``, ``TM_CCOEFF_NORMED``: mean and
contrast changes do not matter) and keeps the best. Both are compared at the coarser of their
two resolutions: when the strip was shrunk, the larger panel is shrunk by as much, so its
detail is lost the same way, rather than the strip blown up. :func:`search` does that for each small
panel against every larger one. It is not an index: it costs 3-14 ms per (small panel,
larger panel) on 2 cores at panels of 40-400 px (strips of 40 x 14 to 160 x 56 px), so it
grows with the product of the two counts, and it looks for the strip as it is (no rotation or
mirror). It is a measurement tool, not part of ``find`` (README, finder section: "Thin strips").
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pandas as pd

SCALES = tuple(float(s) for s in np.geomspace(0.2, 0.9, 8))
"""Widths tried for the small panel, as shares of the larger panel's width."""
MIN_SIDE = 6
"""Smallest side (px) of the shrunk small panel worth correlating."""
MIN_STD = 1.0
"""A shrunk small panel flatter than this (grey levels) carries no pattern to look for."""


def grey(image: np.ndarray) -> np.ndarray:
    """Float32 grey levels of an RGB or grey uint8 image."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    return image.astype(np.float32)


REFINE = tuple(float(r) for r in np.geomspace(0.9, 1.1, 5))
"""Steps around the best of :data:`SCALES` (which are 24 % apart) tried next: 5 % off its scale
(0.381 of the panel's width instead of 0.4) a 40 x 14 px tissue strip correlated 0.75 with its
source, at its scale 0.97 (the strip of ``tests/test_dense.py``, before JPEG)."""


def best_match(small: np.ndarray, large: np.ndarray, scales=SCALES, refine=REFINE) -> dict:
    """Where ``small`` (grey) best correlates inside ``large`` (grey), over ``scales``, then
    over ``refine`` times the best of them.

    Returns:
        ``ncc`` (the best normalised cross-correlation, -1 when no scale fits), ``box``
        (``x0, y0, x1, y1`` in ``large``'s pixels, None without a fit) and ``scale`` (the
        small panel's width as a share of the large one's).
    """
    best = _best_over(small, large, scales)
    if refine and best["box"] is not None:
        finer = _best_over(small, large, [best["scale"] * r for r in refine if r != 1.0])
        best = finer if finer["ncc"] > best["ncc"] else best
    return best


def _local_std(image: np.ndarray, shape) -> np.ndarray:
    """Standard deviation of every window of ``shape`` (rows, columns) that fits in ``image``,
    laid out as ``matchTemplate``'s result."""
    th, tw = shape
    x = image.astype(np.float64)
    mean = cv2.boxFilter(x, -1, (tw, th), normalize=True, borderType=cv2.BORDER_CONSTANT)
    sq = cv2.boxFilter(x * x, -1, (tw, th), normalize=True, borderType=cv2.BORDER_CONSTANT)
    # boxFilter centres the window: the window whose top-left is (y, x) is centred at
    # (y + th // 2, x + tw // 2)
    y0, x0 = th // 2, tw // 2
    rows, cols = image.shape[0] - th + 1, image.shape[1] - tw + 1
    var = sq[y0 : y0 + rows, x0 : x0 + cols] - mean[y0 : y0 + rows, x0 : x0 + cols] ** 2
    return np.sqrt(np.maximum(var, 0.0))


def _best_over(small: np.ndarray, large: np.ndarray, scales) -> dict:
    h, w = small.shape[:2]
    big_h, big_w = large.shape[:2]
    best = {"ncc": -1.0, "box": None, "scale": float("nan")}
    for share in scales:
        tw = big_w * share  # the small panel's width in the large one's pixels
        th = tw * h / w
        if min(tw, th) < MIN_SIDE or th > big_h or tw > big_w:
            continue
        # compare at the coarser of the two resolutions: shrink the large panel to the small
        # one's scale (as the strip was shrunk when it was cut), or the small one to its region
        f = min(1.0, w / tw)
        if f < 1.0:
            size = (max(1, round(big_w * f)), max(1, round(big_h * f)))
            target, template = cv2.resize(large, size, interpolation=cv2.INTER_AREA), small
        else:
            target = large
            template = cv2.resize(small, (round(tw), round(th)), interpolation=cv2.INTER_AREA)
        if min(template.shape) < MIN_SIDE or float(template.std()) < MIN_STD:
            continue
        if template.shape[0] > target.shape[0] or template.shape[1] > target.shape[1]:
            continue
        scores = cv2.matchTemplate(target, template, cv2.TM_CCOEFF_NORMED)
        # a flat window (black background, saturated white) has no pattern: OpenCV's
        # normalisation divides by its ~0 spread and reports up to 1 there
        scores[_local_std(target, template.shape) < MIN_STD] = -1.0
        _, value, _, (x, y) = cv2.minMaxLoc(scores)
        if value > best["ncc"]:
            x0, y0 = x / f, y / f
            box = (round(x0), round(y0), round(x0 + template.shape[1] / f),
                   round(y0 + template.shape[0] / f))  # fmt: skip
            best = {"ncc": float(value), "box": box, "scale": float(share)}
    return best


def search(
    small: dict[str, np.ndarray],
    panels: dict[str, np.ndarray],
    min_area_ratio: float = 2.0,
    k: int = 10,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """The best larger panel for each small one.

    Args:
        small: grey images of the small panels, by key.
        panels: grey images of the panels to search, by key (a small panel's own key is
            skipped).
        min_area_ratio: only panels with at least this many times the small panel's pixels
            are searched (the strip is a part of its source).
        k: how many of the best panels each row lists in ``top``.
        progress: called with 1 after each small panel (a progress bar's ``update``).

    Returns:
        One row per small panel: ``query``, ``best`` (None when no panel fits), ``ncc``,
        ``box`` (in ``best``'s pixels), ``scale``, ``second`` (the best correlation in any other
        panel, -1 when none), ``margin`` (``ncc - second``) and ``top`` (the ``k`` best
        ``(panel, ncc)``, best first). ``attrs["searched"]`` is the number of (small panel,
        panel) pairs searched.
    """
    rows, searched = [], 0
    for key, image in small.items():
        area = image.shape[0] * image.shape[1]
        found = []
        for other, large in panels.items():
            if other == key or large.shape[0] * large.shape[1] < min_area_ratio * area:
                continue
            found.append((best_match(image, large), other))
        searched += len(found)
        found.sort(key=lambda item: item[0]["ncc"], reverse=True)
        top = found[0] if found else ({"ncc": -1.0, "box": None, "scale": float("nan")}, None)
        second = found[1][0]["ncc"] if len(found) > 1 else -1.0
        rows.append({"query": key, "best": top[1], "ncc": top[0]["ncc"], "box": top[0]["box"],
                     "scale": top[0]["scale"], "second": second,
                     "margin": top[0]["ncc"] - second,
                     "top": [(other, m["ncc"]) for m, other in found[:k]]})  # fmt: skip
        if progress is not None:
            progress(1)
    table = pd.DataFrame(
        rows, columns=["query", "best", "ncc", "box", "scale", "second", "margin", "top"]
    )
    table.attrs["searched"] = searched
    return table
