"""Aligned grey-level agreement: once a keypoint fit says where one panel lies in the other,
do their grey levels agree there?

A keypoint fit says that local structure repeats; it does not say that the picture is the same.
Two neighbouring MRI slices, or one template slice shown in two contrasts, fit with dozens of
inliers, yet their grey levels differ where they overlap; a copy's agree, whatever was done to
its intensities, as long as the change was monotone (contrast, gamma, recolouring, JPEG, a
little blur or noise). And unlike the whole-image descriptors (SSCD, hash, thumbnail), this
compares only the region the two panels share, so a partial crop is not penalised for the part
of its source it does not show.

Per image, once (cached with the other descriptors): a small grey patch, the brightest channel
(as :mod:`bfutils.thumbs`), long side :data:`PATCH`. Per verified pair: the fit's map (original
pixels of a to b; the SIFT fit of :func:`bfutils.verify.verify` and the XFeat fit of
:func:`bfutils.localfeat.verify`, the better agreement of the two) is turned into a map between
the two patches, the finer patch is blurred to the coarser one's resolution and warped onto
it, and the agreement is the Spearman rank correlation (average ranks for ties, so a black
background shared by both is no evidence) of the pixels both cover (at least
:data:`MIN_OVERLAP` of them; 0 otherwise). Computed in the frame of the coarser patch, whichever
panel is named first, so it is symmetric in the two panels. About 0.3 ms a fit (a one-off
timing, 2 cores).

The fused model takes the agreement and its margin over the other candidates of both panels
(``al_sim``, ``al_margin``; :func:`bfutils.detector.pair_features`).
"""

from __future__ import annotations

import cv2
import numpy as np

PATCH = 96
"""Long side, in pixels, of the grey patch kept per panel (aspect kept)."""
MIN_OVERLAP = 64
"""Fewest patch pixels both panels must cover for the agreement to be measured."""
MIN_XF_INLIERS = 6
"""An XFeat fit lays one panel over the other only with at least this many inliers (RANSAC
finds some fit of 4 points between almost any two panels; measuring those would cost time and
say nothing)."""
LEVELS = 4
"""Rank steps per grey level (the blurred grey levels are ranked in quarters of a level)."""
SIGMA = 0.6
"""Gaussian blur (patch pixels) of both patches against JPEG blocks, noise and resampling."""


def settings() -> dict:
    """This version's settings, as a detector stores them."""
    return {
        "patch": PATCH,
        "min_overlap": MIN_OVERLAP,
        "sigma": SIGMA,
        "levels": LEVELS,
        "min_xf_inliers": MIN_XF_INLIERS,
    }


def patch(image: np.ndarray) -> np.ndarray:
    """The grey patch of an RGB or grey uint8 image: brightest channel, long side :data:`PATCH`
    (smaller images are kept at their size).

    Returns:
        uint8 (h, w).
    """
    image = np.asarray(image)
    grey = image if image.ndim == 2 else image[..., :3].max(axis=2)
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    h, w = grey.shape
    f = min(1.0, PATCH / max(h, w))
    if f == 1.0:
        return grey
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def _patch_map(map_ab: np.ndarray, shape_a, shape_b, pa: np.ndarray, pb: np.ndarray):
    """The (3, 3) map from a's patch pixels to b's, given the map of original pixels."""

    def to_patch(shape, p) -> np.ndarray:  # original px -> patch px (pixel centres kept)
        sx, sy = p.shape[1] / float(shape[1]), p.shape[0] / float(shape[0])
        return np.array([[sx, 0, 0.5 * (sx - 1)], [0, sy, 0.5 * (sy - 1)], [0, 0, 1.0]])

    full = np.vstack([np.asarray(map_ab, dtype=float), [0, 0, 1]])
    return to_patch(shape_b, pb) @ full @ np.linalg.inv(to_patch(shape_a, pa))


def _onto(src: np.ndarray, dst: np.ndarray, m: np.ndarray) -> tuple[float, int]:
    """Rank correlation of ``src`` warped by ``m`` (src px -> dst px) onto ``dst``, over the
    pixels it covers; ``src`` is blurred first by how much the map shrinks it."""
    shrink = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
    s = src.astype(np.float32)
    extra = 0.5 * np.sqrt(max(1.0 / max(shrink, 1e-6) ** 2 - 1.0, 0.0))  # anti-alias
    sigma = float(np.hypot(SIGMA / max(shrink, 1e-6), extra))
    s = cv2.GaussianBlur(s, (0, 0), sigma)
    d = cv2.GaussianBlur(dst.astype(np.float32), (0, 0), SIGMA)
    size = (dst.shape[1], dst.shape[0])
    warped = cv2.warpAffine(s, m[:2], size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    cover = cv2.warpAffine(np.ones_like(s), m[:2], size, flags=cv2.INTER_NEAREST, borderValue=0.0)
    inside = cv2.erode(cover, np.ones((3, 3), np.uint8)) > 0.5
    n = int(inside.sum())
    if n < MIN_OVERLAP:
        return 0.0, n
    x, y = warped[inside], d[inside]
    if float(x.std()) < 1e-3 or float(y.std()) < 1e-3:
        return 0.0, n
    return _spearman(x, y), n


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks of grey levels in 0..255 (ties share their mean rank, so a tied region
    does not correlate through the order its pixels happen to be listed in), by counting:
    linear in the pixels, no sort."""
    q = np.clip(np.rint(x * LEVELS), 0, 255 * LEVELS).astype(np.intp)
    counts = np.bincount(q, minlength=255 * LEVELS + 1)
    mean_rank = np.cumsum(counts) - 0.5 * (counts + 1)
    return mean_rank[q]


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    return float(rx @ ry / np.sqrt((rx @ rx) * (ry @ ry)))


def agreement(pa: np.ndarray, pb: np.ndarray, map_ab, shape_a, shape_b) -> tuple[float, int]:
    """Rank correlation of the two panels' grey levels where the fit lays one over the other.

    Args:
        pa: :func:`patch` of a.
        pb: :func:`patch` of b.
        map_ab: (2, 3) affine map from a's original pixels to b's (mirroring included), or
            None without a fit.
        shape_a: a's original (height, width).
        shape_b: b's original (height, width).

    Returns:
        ``(rho, n)``: the correlation (0 without a fit or with fewer than
        :data:`MIN_OVERLAP` shared patch pixels) and the shared patch pixels.
    """
    if map_ab is None:
        return 0.0, 0
    m = _patch_map(map_ab, shape_a, shape_b, pa, pb)
    try:
        inv = np.linalg.inv(m)
    except np.linalg.LinAlgError:
        return 0.0, 0
    scale = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
    if abs(np.log(max(scale, 1e-9))) < 0.05:  # about the same resolution: both ways, averaged
        (r1, n1), (r2, n2) = _onto(pa, pb, m), _onto(pb, pa, inv)
        return 0.5 * (r1 + r2), min(n1, n2)
    # in the frame of the coarser patch (a shrinks onto b when scale < 1)
    return _onto(pa, pb, m) if scale < 1 else _onto(pb, pa, inv)
