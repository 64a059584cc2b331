"""Dense template check: is one panel, shrunk, a region of the other? A fifth kind of evidence.

Where it helps: a panel cut from part of a larger image (Bik et al. 2016 category II) that
carries no repeatable keypoints. On the planted figure benchmark the finder's partial-crop
misses are small (40-60 px) or smooth panels (retina, tissue, sparse nuclei) where neither SIFT
nor XFeat keeps a shared keypoint, and whose whole-image descriptors (SSCD, hash, thumbnail)
do not line up because only part of the source is shown. The grey levels of the crop still
line up with a window of the source. So each panel is kept as a small rank-equalised grey
patch (the brightest channel, as :mod:`bfutils.thumbs` does, so recolouring and monotone
contrast or gamma changes matter little), and a pair is scored by the best normalised
cross-correlation of squares of either panel, in their 8 orientations and at :data:`SCALES` of
the other's size, at every position inside the other, as a Fisher z score.

The correlations are one matrix product per searched panel and square side
(:func:`similarities`), not OpenCV's ``matchTemplate`` per template: on the 11,535 shortlisted
pairs of the seed-0 planted draw ``matchTemplate`` took 1.9 ms a pair, the matrix product
0.2 ms (a one-off timing, 2 cores, 2026-12-05).

It is computed for the shortlisted pairs only, and fused by the detector like the other
features (its value and its margin over the other candidates of both images); the calibration
decides how much it counts (:mod:`bfutils.calibrate`).

What it does not see: two crops that overlap only partly (neither lies inside the other), a
copy rotated by a few degrees, and a region whose short side is under about half of the other
panel's long side.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bfutils import phash

PATCH = 64
"""Long side, in pixels, of the grey patch kept per panel (aspect kept)."""
SIDE = 24
"""Long side of the panel searched in; templates are :data:`SCALES` of it."""
SCALES = (0.55, 0.65, 0.77)
"""The panel's short side, shown inside the searched panel, over the searched panel's long
side (a geometric step of about 1.18, so the template's scale is at most 9 % off)."""
SIGMA = 0.7
"""Gaussian blur (pixels at :data:`SIDE`) against JPEG, noise and resampling."""
EFFECTIVE = 4.0
"""Pixels per independent sample after the blur (for the z score of a correlation)."""
ELONGATED = 1.6
"""A panel whose long side is at least this many times its short side also gets templates at
its two ends."""
MIN_SIDE = 6
"""Templates whose short side would be under this many pixels are not tried."""


def patch(image: np.ndarray) -> np.ndarray:
    """The rank-equalised grey patch of an RGB or grey uint8 image (long side :data:`PATCH`).

    Returns:
        uint8 (h, w) with ``max(h, w) == PATCH`` (smaller sides at least 1 px).
    """
    grey = image if image.ndim == 2 else image[..., :3].max(axis=2)
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    h, w = grey.shape
    f = PATCH / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return cv2.equalizeHist(small)


def _resized(p: np.ndarray, long_side: float) -> np.ndarray:
    h, w = p.shape
    f = long_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    out = cv2.resize(p.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(out, (0, 0), SIGMA)


def _squares(p: np.ndarray) -> list[np.ndarray]:
    """The largest squares of a patch: the centre one, and for an elongated panel (a strip)
    also the two ends, so that a thin band is not reduced to its middle."""
    h, w = p.shape
    s = min(h, w)
    along = [(max(h, w) - s) // 2]
    if max(h, w) >= ELONGATED * s:
        along += [0, max(h, w) - s]
    return [p[o : o + s, :] if h > w else p[:, o : o + s] for o in along]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-3)


class Prepared:
    """A panel's search image and its templates (made once per scan, not once per pair).

    A template is a square of the panel (:func:`_squares`) at a side ``t`` (pixels of the
    searched panel), so that one matrix of the searched panel's t x t windows
    (:func:`_windows`) serves every panel compared with it, and the correlations of all their
    templates in all 8 orientations are one matrix product."""

    def __init__(self, p: np.ndarray):
        self.base = _resized(p, SIDE)
        self.flat = float(self.base.std()) < 1.0
        h, w = p.shape
        squares = _squares(p.astype(np.float32))
        self.templates: dict[int, np.ndarray] = {}
        for r in SCALES:
            t = round(r * SIDE * min(h, w) / max(h, w))
            if t < MIN_SIDE or t in self.templates:
                continue
            rows = []
            for sq in squares:
                small = cv2.resize(sq, (t, t), interpolation=cv2.INTER_AREA)
                small = cv2.GaussianBlur(small, (0, 0), SIGMA)
                rows.extend(o.ravel() for o in phash._orientations(small))
            self.templates[t] = _unit_rows(np.stack(rows))


def _windows(base: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Every t x t window of a search image (columns) and one over each window's centred norm
    (0 for a flat window, which matches nothing)."""
    win = sliding_window_view(base, (t, t)).reshape(-1, t * t)
    mean = win.mean(axis=1)
    norm = np.sqrt(np.maximum((win * win).sum(axis=1) - t * t * mean * mean, 0.0))
    inv = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 1e-3 * t)
    return np.ascontiguousarray(win.T), inv[None, :]


def _z(r: np.ndarray, t: int) -> np.ndarray:
    """Fisher z of correlations over a t x t template's independent pixels: a small template
    correlates well somewhere by chance, a large one does not."""
    r = np.clip(r, 0.0, 0.999)
    return np.arctanh(r) * np.sqrt(max(t * t / EFFECTIVE - 3, 1.0))


def similarities(pairs, prepared: dict, bar=None) -> np.ndarray:
    """The template score of each pair: the best z score of either panel's templates, in 8
    orientations, anywhere inside the other; the same in either order; 0 when either panel is
    flat (a blank panel matches nothing).

    Args:
        pairs: sequence of ``(key_a, key_b)``.
        prepared: :class:`Prepared` by key.
        bar: a tqdm progress bar, set to count the panels searched.

    Returns:
        float array, one score per pair.
    """
    pairs = list(pairs)
    out = np.zeros(len(pairs))
    searched: dict = {}  # panel searched in -> [(pair index, template panel)]
    for n, (a, b) in enumerate(pairs):
        if not (prepared[a].flat or prepared[b].flat):
            searched.setdefault(b, []).append((n, a))
            searched.setdefault(a, []).append((n, b))
    if bar is not None:
        bar.reset(total=len(searched))
    for key, jobs in searched.items():
        base = prepared[key].base
        by_side: dict[int, list] = {}
        for n, other in jobs:
            for t, tmpl in prepared[other].templates.items():
                if t <= min(base.shape):
                    by_side.setdefault(t, []).append((n, tmpl))
        for t, items in by_side.items():
            win, inv = _windows(base, t)
            # the templates are centred, so a window's dot product with one is its centred one
            corr = ((np.concatenate([m for _, m in items]) @ win) * inv).max(axis=1)
            ends = np.cumsum([len(m) for _, m in items])
            best = np.maximum.reduceat(corr, np.r_[0, ends[:-1]])
            z = _z(best, t)
            idx = np.array([n for n, _ in items])
            np.maximum.at(out, idx, z)
        if bar is not None:
            bar.update(1)
    return out


def prepare(p: np.ndarray) -> Prepared:
    """:class:`Prepared` of a patch (:func:`patch`)."""
    return Prepared(np.asarray(p, dtype=np.uint8))


def similarity(pa: np.ndarray, pb: np.ndarray) -> float:
    """:func:`similarities` of one pair of patches (:func:`patch`)."""
    return float(similarities([("a", "b")], {"a": prepare(pa), "b": prepare(pb)})[0])
