"""Local verification of one candidate pair from cached keypoints: matches, a geometric fit, and
evidence calibrated against chance. Symmetric in the two images by construction.

Fixes the defects of the pairwise keypoint score (:func:`bfutils.classic.keypoint_details`):

* **One-to-one matches.** After Lowe's ratio test, each target keypoint keeps only its closest
  source keypoint: many source points landing on one target point no longer count as many
  inliers (a collapsed fit).
* **Plausible transforms only.** The affine RANSAC fit is decomposed; fits with a reflection,
  a scale outside ``[1/MAX_SCALE, MAX_SCALE]`` or an anisotropy (ratio of singular values,
  shear included) above :data:`MAX_ANISOTROPY` are rejected: no editor applies them.
* **Evidence against chance.** The inlier count is turned into an a-contrario number of false
  alarms (Moisan & Stival 2004, ORSA; Rabin et al. 2009): the expected number of fits that
  would gather that many inliers by chance, given the number of matches and the share of the
  target's keypoint area that one inlier's tolerance covers. ``evidence = -log10(NFA)`` is 0
  when chance explains the inliers: 5 inliers among 40 matches on a sparse dot plot is
  nothing, 5 among 6 on a large textured tile is a lot.
* **Symmetry.** The pair is put in a canonical order (fewer keypoints first, then content
  hash) before matching, so ``verify(a, b)`` and ``verify(b, a)`` give the same evidence; the
  transform and boxes are then reported in the caller's order.

Mirrored copies are matched too, without a second keypoint pass: the SIFT descriptor of the
mirrored image is the descriptor with its 4 rows of cells reversed and its 8 orientation bins
negated (measured: 471 of 500 keypoints of a tissue image matched their mirrored twin).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.stats import binom

MAX_SCALE = 20.0
"""Largest zoom (in original pixels) accepted: a panel may be a small crop of a large image."""
MAX_ANISOTROPY = 2.5
"""Largest ratio of the fit's singular values (aspect change and shear together)."""
MIN_INLIERS = 5
"""Fewer inliers than this verify nothing (an affine map fits any 3 points)."""
MAX_EVIDENCE = 50.0
MAX_FITS = 3
"""Fits tried per pair and mirror state, each on the matches the earlier ones did not explain."""

MIRROR = np.arange(128).reshape(4, 4, 8)[::-1][:, :, (-np.arange(8)) % 8].reshape(-1)

NO_MATCH = {"inliers": 0, "matches": 0, "evidence": 0.0, "residual": 1.0, "mirror": False,
            "transform": "", "box_a": "", "box_b": "", "rejected": ""}  # fmt: skip


def root_sift(desc: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelovic & Zisserman 2012): L2 on these is Hellinger on SIFT; matches
    better than plain SIFT."""
    d = desc.astype(np.float32)
    d /= d.sum(axis=1, keepdims=True) + 1e-7
    return np.sqrt(d)


def one_to_one(
    desc_a: np.ndarray, desc_b: np.ndarray, ratio: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """Ratio-test matches a -> b with at most one match per target point.

    Args:
        desc_a: (Ka, D) float32 descriptors of the source.
        desc_b: (Kb, D) float32 descriptors of the target.
        ratio: Lowe's ratio.

    Returns:
        ``(ia, ib)``: indices of matched points; each ``ib`` value appears once (the closest
        source point wins).
    """
    if len(desc_a) < 2 or len(desc_b) < 2:
        return np.zeros(0, int), np.zeros(0, int)
    # brute force as one matrix product: verification 465 -> 690 pairs/s over cv2.BFMatcher
    d2 = (desc_a**2).sum(1)[:, None] + (desc_b**2).sum(1)[None, :] - 2.0 * desc_a @ desc_b.T
    rows = np.arange(len(d2))
    nearest = d2.argmin(axis=1)
    first = d2[rows, nearest]
    d2[rows, nearest] = np.inf
    d1, d2nd = np.sqrt(np.maximum(first, 0)), np.sqrt(np.maximum(d2.min(axis=1), 0))
    ok = d1 < ratio * d2nd
    if not ok.any():
        return np.zeros(0, int), np.zeros(0, int)
    ia, ib, dist = np.flatnonzero(ok), nearest[ok], d1[ok]
    order = np.argsort(dist, kind="stable")
    _, first = np.unique(ib[order], return_index=True)  # closest source per target point
    keep = np.sort(order[first])
    return ia[keep].astype(int), ib[keep].astype(int)


def plausible(affine: np.ndarray, zoom: float = 1.0) -> str:
    """Why an affine fit is not an editor's transform ("" when it is plausible).

    Args:
        affine: 2x3 map from image a to image b (keypoint pixels).
        zoom: factor that converts the fit's scale to original pixels.
    """
    lin = affine[:, :2]
    det = float(np.linalg.det(lin))
    if det <= 0:
        return "reflection or collapse"
    s = np.linalg.svd(lin, compute_uv=False)
    if s[0] / s[1] > MAX_ANISOTROPY:
        return f"anisotropy {s[0] / s[1]:.1f}"
    scale = math.sqrt(det) * zoom
    if not 1 / MAX_SCALE <= scale <= MAX_SCALE:
        return f"scale {scale:.3g}"
    return ""


def nfa_evidence(inliers: int, matches: int, tolerance_px: float, area_px: float) -> float:
    """-log10 of the number of false alarms of ``inliers`` among ``matches`` (a-contrario).

    Under the null hypothesis each match lands anywhere in the target's keypoint area
    ``area_px``, so it falls within ``tolerance_px`` of the fitted position with probability
    ``p = pi * tolerance_px**2 / area_px``. RANSAC chooses a fit from 3 matches (an affine map),
    among ``C(matches, 3)`` possible ones; the other ``matches - 3`` are independent trials. So
    ``NFA = C(matches, 3) * P(Binomial(matches - 3, p) >= inliers - 3)``. Evidence 0 means
    chance alone would explain the inliers.
    """
    if inliers < MIN_INLIERS or matches < 4:
        return 0.0
    p = min(1.0, math.pi * tolerance_px**2 / max(area_px, 1.0))
    log_tests = math.lgamma(matches + 1) - math.lgamma(4) - math.lgamma(matches - 2)
    log_tail = float(binom.logsf(inliers - 4, matches - 3, p))  # P(X >= inliers - 3)
    return float(np.clip(-(log_tests + log_tail) / math.log(10), 0.0, MAX_EVIDENCE))


def _extent(points: np.ndarray, rec: dict) -> float:
    """The smaller side of the points' bounding box, as a share of the panel's side in that
    direction (points in keypoint pixels, as :func:`bfutils.descriptors.keypoints` gives them)."""
    h, w = (float(v) * float(rec["kp_scale"]) for v in rec["shape"][:2])
    span = points.max(axis=0) - points.min(axis=0)
    return float(min(span[0] / max(w, 1.0), span[1] / max(h, 1.0)))


def thin_band(pts_a: np.ndarray, pts_b: np.ndarray, ra: dict, rb: dict, limit: float) -> str:
    """Why a fit's inliers are not evidence of reuse when they lie on a thin band in both
    panels (``""`` when they do not, or when ``limit`` is 0).

    Two unrelated gel or blot panels annotated with the same row of lane numbers
    ("1 2 3 ... 8") share a dozen exactly fitting keypoints on that row: a rigid fit at scale 1
    with strong a-contrario evidence that says nothing about the images. A reused panel, even a
    partial crop, spreads its inliers over the content in at least one of the two panels: the
    test takes, for each panel, the smaller side of the inliers' bounding box as a share of
    that panel's side, and refuses the fit when both are below ``limit``
    (the detector's ``keypoints["min_extent"]``; absent, 0, in the shipped detector).

    Known failure, why it is opt-in (``python -m bfutils.calibrate --min-extent``): one blot
    strip reused inside two panels of stacked strips is a thin band of both as well, and is
    refused (``tests/test_verify.py``).
    """
    if not limit or not len(pts_a):
        return ""
    extent = max(_extent(pts_a, ra), _extent(pts_b, rb))
    if extent < limit:
        return f"inliers on a thin band ({extent:.2f} of either panel's side): a row of labels?"
    return ""


def _hull_area(points: np.ndarray) -> float:
    if len(points) < 3:
        return 0.0
    try:
        return float(ConvexHull(points).volume)  # in 2-D, volume is the area
    except QhullError:  # collinear points
        return 0.0


def _fit(pts_a, pts_b, ia, ib, ransac_px: float, zoom: float):
    """RANSAC affine fit of matched points; ``(mask, affine, rejection reason)``.

    The mask of a refused fit is returned too (its inliers are set aside before the next try).
    """
    if len(ia) < MIN_INLIERS:
        return None, None, ""
    affine, mask = cv2.estimateAffine2D(
        pts_a[ia], pts_b[ib], method=cv2.RANSAC, ransacReprojThreshold=ransac_px,
        maxIters=2000, confidence=0.995, refineIters=10,
    )  # fmt: skip
    if affine is None:
        return None, None, ""
    return mask.ravel().astype(bool), affine, plausible(affine, zoom=zoom)


def _fits(pts_a, pts_b, ia, ib, ransac_px: float, zoom: float, tries: int = None):
    """Up to ``tries`` fits of one set of matches, each on the matches the earlier ones left.

    The strongest consensus is not always the copy: a refused fit (a collapse onto a few
    target points, a mirror-symmetric structure) or a row of label digits can outvote it.
    Setting their inliers aside and fitting again finds the content underneath.

    Yields:
        ``(inlier indices into ia/ib, affine, rejection reason)``.
    """
    left = np.arange(len(ia))
    for _ in range(MAX_FITS if tries is None else tries):
        mask, affine, why = _fit(pts_a, pts_b, ia[left], ib[left], ransac_px, zoom)
        if mask is None or mask.sum() < MIN_INLIERS:
            return
        yield left[mask], affine, why
        left = left[~mask]


def _one_way(ra: dict, rb: dict, settings: dict) -> dict:
    """Evidence of a -> b, direct and against the mirror of b (the stronger wins)."""
    best, rejected = dict(NO_MATCH), ""
    da, db = root_sift(ra["desc"]), root_sift(rb["desc"])
    pts_a, pts_b = ra["points"], rb["points"]
    width_b = float(rb["shape"][1] * rb["kp_scale"])
    zoom = float(ra["kp_scale"] / rb["kp_scale"])  # keypoint-px scale -> original-px scale
    area_b = max(_hull_area(pts_b), 0.05 * width_b * float(rb["shape"][0] * rb["kp_scale"]))
    min_extent = float(settings.get("min_extent", 0.0))  # absent in detectors before 2026-12-06
    for mirror in (False, True):
        tb = pts_b.copy()
        if mirror:
            tb[:, 0] = width_b - 1 - tb[:, 0]
        ia, ib = one_to_one(da, db[:, MIRROR] if mirror else db, ratio=settings["ratio"])
        for n, (sel, affine, why) in enumerate(_fits(pts_a, tb, ia, ib, settings["ransac_px"],
                                                     zoom)):  # fmt: skip
            if not why and min_extent:  # off in the shipped detector: no work on its path
                why = thin_band(pts_a[ia[sel]], tb[ib[sel]], ra, rb, min_extent)
            if why:
                rejected = rejected or why
                continue
            k = len(sel)
            # each extra try is one more test: NFA x (n + 1)
            ev = max(
                0.0, nfa_evidence(k, len(ia), settings["ransac_px"], area_b) - math.log10(n + 1)
            )
            if ev > best["evidence"] or (ev == best["evidence"] and k > best["inliers"]):
                best = {"inliers": k, "matches": len(ia), "evidence": ev, "mirror": mirror,
                        "residual": _residual(affine, pts_a[ia[sel]], tb[ib[sel]],
                                              settings["ransac_px"]),
                        "transform": "", "box_a": "", "box_b": "",
                        "_affine": affine, "_ia": ia[sel], "_ib": ib[sel]}  # fmt: skip
    # a refused fit is worth reporting only when no fit was accepted
    return best | {"rejected": "" if "_affine" in best else rejected}


def _residual(affine: np.ndarray, src: np.ndarray, dst: np.ndarray, tolerance: float) -> float:
    """Median distance of the inliers from the fitted map, as a share of the RANSAC tolerance.

    A copy is a copy to the pixel (resampling and JPEG move keypoints by a fraction of a
    pixel); a neighbouring slice or tile that looks alike only fits loosely, its inliers spread
    over the whole tolerance.
    """
    moved = src @ affine[:, :2].T + affine[:, 2]
    return float(np.median(np.linalg.norm(moved - dst, axis=1)) / tolerance)


def _box(points: np.ndarray, scale: float) -> str:
    """Bounding box of points in original pixels, ``x0,y0,x1,y1``."""
    x0, y0 = points.min(axis=0) / scale
    x1, y1 = points.max(axis=0) / scale
    return f"{x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f}"


def _describe(affine: np.ndarray, mirror: bool, zoom: float) -> str:
    lin = affine[:, :2]
    angle = math.degrees(math.atan2(lin[1, 0] - lin[0, 1], lin[0, 0] + lin[1, 1]))
    scale = math.sqrt(abs(np.linalg.det(lin))) * zoom
    return f"rot {angle:+.0f} deg, scale {scale:.2f}" + (", mirrored" if mirror else "")


def verify(
    ra: dict, rb: dict, settings: dict, sha_a: str = "", sha_b: str = "", with_map: bool = False
) -> dict:
    """Keypoint evidence that one image was derived from the other, the same in either order.

    Args:
        ra: cached descriptors of image a (``points``, ``desc``, ``kp_scale``, ``shape``).
        rb: the same for image b.
        settings: the detector's keypoint settings (``ratio``, ``ransac_px``).
        sha_a: content hash of a (breaks ties in the canonical order).
        sha_b: content hash of b.

    Returns:
        ``inliers``, ``matches`` (one-to-one), ``evidence`` (-log10 NFA), ``residual``
        (median inlier distance from the fit / tolerance; 1 without a fit), ``mirror``,
        ``transform`` (a -> b: rotation, scale, mirrored), ``box_a`` and ``box_b`` (the matched
        region, ``x0,y0,x1,y1`` in original pixels) and ``rejected`` (why a fit was refused).
        With ``with_map``, also ``map_ab``: the accepted fit as a (2, 3) affine map from a's
        original pixels to b's (mirroring included), or None without one.
    """
    swap = (len(ra["points"]), sha_a) > (len(rb["points"]), sha_b)
    first, second = (rb, ra) if swap else (ra, rb)
    best = _one_way(first, second, settings)
    out = {k: v for k, v in best.items() if not k.startswith("_")}
    if with_map:
        out["map_ab"] = None
    if "_affine" not in best:
        return out
    affine, mirror = best["_affine"], best["mirror"]
    if with_map:
        out["map_ab"] = _original_map(affine, mirror, first, second, swap)
    zoom = float(first["kp_scale"] / second["kp_scale"])
    pts_second = second["points"][best["_ib"]].copy()
    box_first = _box(first["points"][best["_ia"]], float(first["kp_scale"]))
    box_second = _box(pts_second, float(second["kp_scale"]))
    if swap:  # report a -> b: invert the map
        full = np.vstack([affine, [0, 0, 1]])
        affine, zoom = np.linalg.inv(full)[:2], 1 / zoom
        box_first, box_second = box_second, box_first
    out.update(transform=_describe(affine, mirror, zoom), box_a=box_first, box_b=box_second)
    return out


def _original_map(affine, mirror: bool, first: dict, second: dict, swap: bool) -> np.ndarray:
    """The fit of :func:`_one_way` (first's keypoint px -> second's, mirrored or not) as a map
    of original pixels, from the caller's a to b."""

    def to_keypoints(s: float) -> np.ndarray:  # cv2.resize keeps pixel centres: (x + .5) s - .5
        return np.array([[s, 0, 0.5 * (s - 1)], [0, s, 0.5 * (s - 1)], [0, 0, 1.0]])

    s1, s2 = float(first["kp_scale"]), float(second["kp_scale"])
    full = np.linalg.inv(to_keypoints(s2))
    if mirror:  # the fit maps onto the mirrored keypoints of second: x' = width - 1 - x
        width = float(second["shape"][1] * s2)
        full = full @ np.array([[-1.0, 0, width - 1], [0, 1, 0], [0, 0, 1]])
    full = full @ np.vstack([affine, [0, 0, 1]]) @ to_keypoints(s1)
    if swap:
        full = np.linalg.inv(full)
    return full[:2]


MAX_CLONE_ROTATION = 20.0
"""Degrees: a region cloned inside one image is pasted nearly upright (a copy-move forgery)."""


def _not_a_clone(affine: np.ndarray) -> str:
    """Why a fit inside one image is not a cloned region ("" when it may be)."""
    lin = affine[:, :2]
    angle = math.degrees(math.atan2(lin[1, 0] - lin[0, 1], lin[0, 0] + lin[1, 1]))
    scale = math.sqrt(abs(np.linalg.det(lin)))
    if abs(angle) > MAX_CLONE_ROTATION or not 0.8 <= scale <= 1.25:
        return f"inside one image: rotation {angle:+.0f} deg, scale {scale:.2f} (symmetry?)"
    return ""


def self_similar(rec: dict, settings: dict, min_shift: float = 0.1) -> dict:
    """Repeated regions inside one image: keypoints matched to the image's own keypoints.

    A keypoint's own neighbourhood (closer than ``min_shift`` of the image's short side) is
    excluded, so the identity map and blurred edges do not count; the rest is the pair check
    (one-to-one matches, plausible fit, a-contrario evidence) with the image as both sides,
    plus one condition: a cloned region is pasted nearly upright and at nearly the same size
    (:data:`MAX_CLONE_ROTATION`), which rules out the mirror symmetry of anatomy.

    Args:
        rec: cached descriptors of the image.
        settings: the detector's keypoint settings.
        min_shift: smallest displacement, as a fraction of the short side.

    Returns:
        As :func:`verify`, with ``box_a`` the source region and ``box_b`` its copy.
    """
    out = dict(NO_MATCH)
    pts, desc = rec["points"], root_sift(rec["desc"])
    if len(pts) < 2 * MIN_INLIERS:
        return out
    shift = min_shift * float(min(rec["shape"]) * rec["kp_scale"])
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc, desc, k=min(len(desc), 6))
    rows = []
    for ms in knn:
        far = [m for m in ms if np.hypot(*(pts[m.queryIdx] - pts[m.trainIdx])) >= shift]
        near_dist = [m.distance for m in ms if m not in far and m.trainIdx != m.queryIdx]
        if len(far) >= 2 and far[0].distance < settings["ratio"] * far[1].distance:
            if not near_dist or far[0].distance < min(near_dist):
                rows.append((far[0].queryIdx, far[0].trainIdx, far[0].distance))
    # one direction per pair of points, then one match per target point
    rows = [r for r in rows if r[0] < r[1]]
    if len(rows) < MIN_INLIERS:
        return out
    ia, ib, dist = (np.asarray(c) for c in zip(*rows, strict=True))
    order = np.argsort(dist, kind="stable")
    _, first = np.unique(ib[order], return_index=True)
    keep = np.sort(order[first])
    ia, ib = ia[keep].astype(int), ib[keep].astype(int)
    mask, affine, why = _fit(pts, pts, ia, ib, settings["ransac_px"], zoom=1.0)
    if mask is None or why:
        return out | {"rejected": why}
    why = _not_a_clone(affine)
    if why:  # e.g. the mirror symmetry of a brain slice, matched as a half-turn
        return out | {"rejected": why}
    k = int(mask.sum())
    area = max(_hull_area(pts), 1.0)
    scale = float(rec["kp_scale"])
    return out | {
        "inliers": k, "matches": len(ia),
        "evidence": nfa_evidence(k, len(ia), settings["ransac_px"], area),
        "transform": _describe(affine, False, 1.0),
        "box_a": _box(pts[ia[mask]], scale), "box_b": _box(pts[ib[mask]], scale),
    }  # fmt: skip
