"""Per-panel descriptors, computed once per image and cached on disk by content hash.

For every panel the finder needs, and computes exactly once:

* a **global descriptor**: the detector's encoder, globally average-pooled, for the image and
  (if the detector asks for them) its mirrored and rotated views;
* **regional descriptors**: the same feature map average-pooled over overlapping windows
  (R-MAC-like regions at two scales, Tolias et al. 2016), from the same forward pass, so a
  small panel finds the large image it was cut from without embedding tiles separately;
* a **copy descriptor** (if the detector has one): SSCD, trained for copy detection
  (:mod:`bfutils.copydesc`);
* **perceptual hashes** (if the detector has them): imagededup's PHash in the 8 orientations
  of the square (:mod:`bfutils.phash`);
* a **grey thumbnail** (if the detector has them): the rank-equalised 32 x 32 brightest
  channel (:mod:`bfutils.thumbs`);
* **keypoints**: SIFT positions and descriptors of the grey image (contrast-stretched,
  resized so the short side is at least ``min_side`` and the long side at most ``max_side``).

The cache (``<cache>/<detector key>/<sha[:2]>/<sha>.npz``, plain arrays, no pickle) is keyed by
the file's content hash and by everything in the detector that changes descriptors, so
re-scanning a grown library only embeds the new files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from bfutils import aligned, classic, panels, phash, progress, template, thumbs

REGION_WINDOWS = ((5, 2), (4, 3))
"""(window side in feature-map cells, windows per axis): 2x2 windows of 5/7 and 3x3 of 4/7 of
the side on the 7x7 map of a 224 px input; partial crops of 30-60 % area have sides of 55-77 %."""
VIEW_OPS = {
    "identity": lambda x: x,
    "hflip": lambda x: x.flip(-1),
    "rot90": lambda x: x.rot90(1, (-2, -1)),
    "rot180": lambda x: x.rot90(2, (-2, -1)),
    "rot270": lambda x: x.rot90(3, (-2, -1)),
}


def default_cache_dir() -> Path:
    """``$BFUTILS_CACHE`` or ``$XDG_CACHE_HOME/bfutils`` (``~/.cache/bfutils``)."""
    if os.environ.get("BFUTILS_CACHE"):
        return Path(os.environ["BFUTILS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bfutils"


# ----------------------------------------------------------------------------- encoder input
def to_input(image: np.ndarray, size: int, fit: str) -> np.ndarray:
    """An RGB uint8 image as the encoder's ``size`` x ``size`` input.

    ``squash`` resizes the whole image to the square (aspect changes, nothing is lost, and
    feature-map cells map linearly onto the image, which regional boxes need); ``pad`` keeps
    the aspect on black.
    """
    h, w = image.shape[:2]
    if fit == "squash":
        interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_CUBIC
        return cv2.resize(image, (size, size), interpolation=interp)
    return panels.data.fit_square(image, size=size, fit=fit)


def region_boxes(cells: int = 7) -> np.ndarray:
    """(R, 4) windows of the feature map as image fractions (x0, y0, x1, y1)."""
    boxes = []
    for side, n in REGION_WINDOWS:
        for y in np.linspace(0, cells - side, n).round().astype(int):
            for x in np.linspace(0, cells - side, n).round().astype(int):
                boxes.append((x / cells, y / cells, (x + side) / cells, (y + side) / cells))
    return np.asarray(boxes, dtype=np.float32)


def embed(
    encoder: torch.nn.Module,
    inputs: np.ndarray,
    norm: tuple,
    views: Sequence[str] = ("identity",),
    regions: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Global (per view) and regional descriptors of a batch of encoder inputs.

    Args:
        encoder: timm encoder with ``forward_features`` (pooled output = mean of that map).
        inputs: uint8 (N, S, S, 3), see :func:`to_input`.
        norm: (mean, std) per channel on [0, 1] inputs.
        views: names in :data:`VIEW_OPS`; each is one forward pass.
        regions: also pool the identity view's map over :func:`region_boxes`.

    Returns:
        ``(global, regional)``: float32 (N, V, D) and (N, R, D) (R = 0 without regions).
    """
    x = torch.from_numpy(inputs).permute(0, 3, 1, 2).float() / 255.0
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in norm)
    x = (x - mean) / std
    out_g, out_r = [], None
    with torch.inference_mode():
        for view in views:
            fmap = encoder.forward_features(
                VIEW_OPS[view](x).contiguous(memory_format=torch.channels_last)
            )
            out_g.append(fmap.mean(dim=(2, 3)))
            if view == "identity" and regions:
                out_r = _pool_regions(fmap)
    g = torch.stack(out_g, dim=1).float().numpy()
    r = out_r.float().numpy() if out_r is not None else np.zeros((len(x), 0, g.shape[-1]))
    return g, r.astype(np.float32)


def _pool_regions(fmap: torch.Tensor) -> torch.Tensor:
    """(N, R, D) averages of the map over the windows of :data:`REGION_WINDOWS`."""
    cells = fmap.shape[-1]
    pooled = []
    for side, n in REGION_WINDOWS:
        p = F.avg_pool2d(fmap, kernel_size=side, stride=1)  # every window of that side
        idx = np.linspace(0, cells - side, n).round().astype(int)
        pooled.append(p[:, :, idx][:, :, :, idx].flatten(2))  # (N, D, n*n), row-major
    return torch.cat(pooled, dim=2).transpose(1, 2)


# ----------------------------------------------------------------------------- keypoints
def keypoints(image: np.ndarray, settings: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """SIFT keypoints of one image, once.

    Args:
        image: RGB uint8.
        settings: the detector's keypoint settings (``max_keypoints``, ``min_side``,
            ``max_side``, optional ``contrast_threshold``).

    Returns:
        ``(points, descriptors, scale)``: (K, 2) float32 positions in the resized grey image,
        (K, 128) uint8 SIFT descriptors, and the resize factor (original px x scale =
        keypoint px).
    """
    gray = classic.gray(image, min_side=0, stretch=True)
    h, w = gray.shape
    scale = 1.0
    if min(h, w) < settings["min_side"]:  # small panels: SIFT's first octave needs pixels
        scale = min(settings["min_side"] / min(h, w), 4.0)
    if max(h, w) * scale > settings["max_side"]:  # large images: bound the time
        scale = settings["max_side"] / max(h, w)
    if scale != 1.0:
        interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=interp)
    sift = cv2.SIFT_create(
        nfeatures=settings["max_keypoints"],
        contrastThreshold=settings.get("contrast_threshold", 0.04),  # OpenCV's default
    )
    kps, desc = sift.detectAndCompute(gray, None)
    pts = np.float32([k.pt for k in kps]).reshape(-1, 2)
    if desc is None:
        desc = np.zeros((0, 128), np.float32)
    return pts, np.clip(desc, 0, 255).astype(np.uint8), float(scale)


# ----------------------------------------------------------------------------- cache
def _cache_path(cache: Path, sha: str) -> Path:
    return cache / sha[:2] / f"{sha}.npz"


def load_cached(cache: Path | None, sha: str) -> dict | None:
    """The cached descriptors of one panel, or None (missing or unreadable cache file)."""
    if cache is None:
        return None
    path = _cache_path(cache, sha)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):  # a half-written file from an interrupted run: recompute
        return None


def save_cached(cache: Path | None, sha: str, record: dict) -> None:
    """Write one panel's descriptors atomically (write, then rename)."""
    if cache is None:
        return
    path = _cache_path(cache, sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **record)
    os.replace(tmp, path)


def thumb_settings() -> dict:
    """This version's thumbnail settings (:mod:`bfutils.thumbs`), as a detector stores them."""
    return {"side": thumbs.SIDE, "sigma": thumbs.SIGMA}


def template_settings() -> dict:
    """This version's dense-template settings (:mod:`bfutils.template`), as a detector stores
    them."""
    return {"patch": template.PATCH, "side": template.SIDE, "scales": list(template.SCALES),
            "sigma": template.SIGMA}  # fmt: skip


def _check_settings(kind: str, spec, current: dict) -> None:
    """Refuse a detector that asks for ``kind`` descriptors with settings this version does not
    compute (``True``, in a file written before the settings were stored, means this
    version's)."""
    if isinstance(spec, dict) and spec != current:
        raise ValueError(
            f"the detector asks for {kind} with {spec}; this version computes {current}: "
            "recalibrate (python -m bfutils.calibrate)"
        )


def compute(images: Sequence[np.ndarray], det, encoder=None, norm=None) -> list[dict]:
    """Descriptors of in-memory RGB uint8 images (what :func:`describe` caches per file).

    Args:
        images: RGB uint8 arrays of any size.
        det: a :class:`bfutils.detector.Detector`.
        encoder: the detector's encoder, when the caller already built it.
        norm: its normalisation.

    Returns:
        One dict per image: ``global`` (V, D) and ``regional`` (R, D) float16 (empty when the
        detector has no encoder views), ``phash`` (8, 8) uint8 when the detector asks for it
        (:mod:`bfutils.phash`), ``thumb`` (32, 32) uint8 when it asks for that
        (:mod:`bfutils.thumbs`), ``tpatch`` (a grey patch, long side 64 px) uint8 when it asks
        for the dense template check (:mod:`bfutils.template`), ``points``,
        ``desc``, ``kp_scale``, ``shape`` (h, w), ``blank``, and ``copy`` (512,) float16 when
        the detector has a copy descriptor (:mod:`bfutils.copydesc`), and the XFeat keypoints
        of :func:`bfutils.localfeat.describe` when it asks for them (``preprocess["xfeat"]``).
    """
    if not len(images):
        return []
    pre = det.preprocess
    if det.uses_encoder:
        if encoder is None:
            encoder, norm = det.encoder_and_norm()
        g, r = embed(
            encoder, np.stack([to_input(im, pre["size"], pre["fit"]) for im in images]),
            norm=norm, views=pre["views"], regions=pre["regions"],
        )  # fmt: skip
    else:  # copy descriptor and keypoints only: no encoder pass
        g, r = np.zeros((len(images), 0, 0), np.float32), np.zeros((len(images), 0, 0), np.float32)
    copy = None
    if pre.get("copy"):
        from bfutils import copydesc

        copy = copydesc.embed(images, size=pre["copy"]["size"], model=pre["copy"]["model"])
    local = None
    if pre.get("xfeat"):
        from bfutils import localfeat

        local = localfeat.describe(images, pre["xfeat"])
    out = []
    for n, (image, gi, ri) in enumerate(zip(images, g, r, strict=True)):
        pts, desc, scale = keypoints(image, det.keypoints)
        rec = {
            "global": gi.astype(np.float16), "regional": ri.astype(np.float16), "points": pts,
            "desc": desc, "kp_scale": np.float32(scale), "shape": np.int32(image.shape[:2]),
            "blank": np.bool_(panels.is_blank(image)),
        }  # fmt: skip
        if copy is not None:
            rec["copy"] = copy[n].astype(np.float16)
        if pre.get("phash"):
            rec["phash"] = phash.hashes(image)
        if pre.get("thumb"):
            _check_settings("thumbnails", pre["thumb"], thumb_settings())
            rec["thumb"] = thumbs.thumbnail(image)
        if pre.get("template"):
            _check_settings("template patches", pre["template"], template_settings())
            rec["tpatch"] = template.patch(image)
        if pre.get("aligned"):
            _check_settings("aligned patches", pre["aligned"], aligned.settings())
            rec["apatch"] = aligned.patch(image)
        if local is not None:
            rec |= local[n]
        out.append(rec)
    return out


def describe(
    items: Sequence[panels.Panel],
    det,
    cache: Path | None,
    batch_size: int = 32,
    show_progress: bool = True,
) -> tuple[dict[str, dict], list[dict]]:
    """Descriptors of every panel, from the cache or computed (read, embed, keypoints) once.

    Args:
        items: panels to describe.
        det: a :class:`bfutils.detector.Detector`.
        cache: cache folder for this detector (None: no cache).
        batch_size: images per encoder forward pass.
        show_progress: show the ``embed`` progress bar.

    Returns:
        ``(records, skipped)``: ``records[panel.sha]`` as returned by :func:`compute`;
        ``skipped`` lists ``{"file", "reason"}`` for panels that could not be read.
    """
    records: dict[str, dict] = {}
    skipped: list[dict] = []
    todo, seen = [], set()
    for item in items:
        if item.sha in seen:
            continue
        seen.add(item.sha)
        cached = load_cached(cache, item.sha)
        if cached is not None:
            records[item.sha] = cached
        else:
            todo.append(item)
    bar = progress.bar(total=len(todo), desc="embed", unit="img", disable=not show_progress)
    encoder, norm = det.encoder_and_norm() if todo and det.uses_encoder else (None, None)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        good, images = [], []
        for item in chunk:
            try:
                images.append(panels.read(item))
                good.append(item)
            except panels.data.ImageReadError as err:
                skipped.append({"file": item.key, "reason": err.problem, "sha": item.sha})
        for item, rec in zip(good, compute(images, det, encoder, norm), strict=True):
            save_cached(cache, item.sha, rec)
            records[item.sha] = rec
        bar.update(len(chunk))
    bar.close()
    return records, skipped
