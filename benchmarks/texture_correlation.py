"""Does the fine texture under the keypoint fit tell a copy from the next fMRI volume or slice?

    python -m bfutils.pipeline --profile smoke --run-name texture --only 01 02 03 04
    python benchmarks/texture_correlation.py runs/texture

The smoke run's fused model misses copies that have a strong keypoint fit: their hardest
negatives (consecutive volumes of one EPI slice, slices 2 mm apart) share every edge, so every
keypoint, hash and thumbnail. What differs is the noise and the finest detail, which a copy keeps.
This measures that as one number per pair: where :func:`bfutils.verify.verify`'s fit (its
``map_ab``, polished by OpenCV's ECC) lays one image on the other, the correlation of the
brightest channel band-passed by a difference of Gaussians (1 and 2 px), in the frame of the
image that shows the shared region with fewer pixels, over the overlap.

It prints, for the run's validation and test pairs:

1. the ROC-AUC of the correlation and of the inlier count among pairs with >= 15 inliers;
2. the run's fused model (the joint pair model's logit and :data:`bfutils.baselines.VERIFY_COLUMNS`,
   degree :data:`bfutils.baselines.FUSE_DEGREE`) with and without the correlation as one more
   input: the cross-fitted validation ROC-AUC (what would decide), test ROC-AUC, and at the
   validation-F1 threshold the test recall, false alarms and families under 0.95.

The README reports the result (the correlation was not made a fused input).
"""

from __future__ import annotations

import argparse
import hashlib
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from bfutils import baselines, descriptors, detector, pairs, results, verify

SIGMAS = (1.0, 2.0)
MAX_SIDE = 256
REFINE_MAX_PX = 2.0


def _band(grey: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(grey, (0, 0), SIGMAS[0]) - cv2.GaussianBlur(grey, (0, 0), SIGMAS[1])


def _refine(frame: np.ndarray, other: np.ndarray, to_other: np.ndarray) -> np.ndarray:
    """The fit polished by ECC; as it was when ECC fails or moves a corner > REFINE_MAX_PX."""
    start = to_other[:2].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4)
    try:
        _, found = cv2.findTransformECC(frame, other, start.copy(), cv2.MOTION_AFFINE, criteria,
                                        None, 3)  # fmt: skip
    except cv2.error:
        return to_other
    h, w = frame.shape
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float)
    moved = np.abs(corners @ (found - start).T.astype(float)).max()
    if not np.isfinite(moved) or moved > REFINE_MAX_PX:
        return to_other
    return np.vstack([found.astype(np.float64), [0, 0, 1]])


def _correlate_in(frame: np.ndarray, other: np.ndarray, to_other: np.ndarray) -> float:
    """Band-pass correlation of ``frame`` and ``other`` warped onto it (``to_other``: frame px
    -> other px), over the overlap."""
    to_other = np.vstack([to_other, [0, 0, 1]])
    shrink = min(1.0, MAX_SIDE / max(frame.shape))
    if shrink < 1.0:
        size = (max(1, round(frame.shape[1] * shrink)), max(1, round(frame.shape[0] * shrink)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        to_other = to_other @ np.diag([1 / shrink, 1 / shrink, 1.0])
    zoom = math.sqrt(abs(np.linalg.det(to_other[:2, :2])))  # other px per frame px
    if zoom > 1.0:  # anti-aliasing before sampling the finer image
        other = cv2.GaussianBlur(other, (0, 0), 0.5 * math.sqrt(zoom**2 - 1))
    to_other = _refine(frame, other, to_other)
    h, w = frame.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(other, to_other[:2], (w, h), flags=flags)
    inside = cv2.warpAffine(np.ones(other.shape, np.uint8), to_other[:2], (w, h), flags=flags)
    reach = 2 * math.ceil(2 * SIGMAS[1]) + 1  # the band sees 2 sigmas around a pixel
    inside = cv2.erode(inside, np.ones((reach, reach), np.uint8), borderValue=0) > 0
    if inside.sum() < 100:
        return 0.0
    x, y = _band(frame)[inside], _band(warped)[inside]
    x, y = x - x.mean(), y - y.mean()
    norm = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / norm) if norm > 1e-6 else 0.0


def texture_correlation(image_a: np.ndarray, image_b: np.ndarray, map_ab) -> float:
    """The correlation for one pair; 0 without a fit. The same in either order (the frame is
    the coarser image; at equal resolution both frames are averaged)."""
    if map_ab is None:
        return 0.0
    grey_a, grey_b = (im[..., :3].max(axis=2).astype(np.float32) for im in (image_a, image_b))
    full = np.vstack([np.asarray(map_ab, float), [0, 0, 1]])
    if abs(np.linalg.det(full)) < 1e-12:
        return 0.0
    to_b, to_a = full[:2], np.linalg.inv(full)[:2]
    zoom = math.sqrt(abs(np.linalg.det(to_b[:, :2])))  # b px per a px
    if zoom > 1.0 + 1e-3:
        return _correlate_in(grey_a, grey_b, to_b)
    if zoom < 1.0 - 1e-3:
        return _correlate_in(grey_b, grey_a, to_a)
    return 0.5 * (_correlate_in(grey_a, grey_b, to_b) + _correlate_in(grey_b, grey_a, to_a))


def pair_correlations(a_images, b_images, det) -> pd.DataFrame:
    """``inliers`` and ``texture`` of each pair (each distinct image described once)."""
    keys, distinct = [], {}
    for image in (*a_images, *b_images):
        key = hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()
        keys.append(key)
        distinct.setdefault(key, image)
    order = list(distinct)
    recs = dict(zip(order, descriptors.compute([distinct[k] for k in order], det), strict=True))
    n, rows = len(a_images), []
    for ka, kb in zip(keys[:n], keys[n:], strict=True):
        ev = verify.verify(recs[ka], recs[kb], det.keypoints, ka, kb, with_map=True)
        texture = texture_correlation(distinct[ka], distinct[kb], ev["map_ab"])
        rows.append({"inliers": ev["inliers"], "texture": texture})
    return pd.DataFrame(rows)


def fused_with(val: pd.DataFrame, test: pd.DataFrame, columns: list[str], seed: int = 0) -> dict:
    """The fused model on ``columns``: cross-fitted validation and test scores, F1 threshold."""
    model = baselines.fused_pipeline(baselines.FUSE_DEGREE)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    xv, yv = val[columns].to_numpy(), val["label"].to_numpy()
    sv = cross_val_predict(model, xv, yv, cv=folds, method="predict_proba")[:, 1]
    st = model.fit(xv, yv).predict_proba(test[columns].to_numpy())[:, 1]
    grid = np.unique(sv)
    threshold = grid[int(np.argmax([f1_score(yv, sv >= t) for t in grid]))]
    pos, hit = test["label"].to_numpy() == 1, st >= threshold
    family = test[pos].assign(hit=hit[pos]).groupby("family")["hit"].mean()
    return {"val ROC-AUC": round(roc_auc_score(yv, sv), 4),
            "test ROC-AUC": round(roc_auc_score(test["label"], st), 4),
            "test recall": round(float(hit[pos].mean()), 3), "false alarms": int(hit[~pos].sum()),
            "negatives": int((~pos).sum()),
            "families < 0.95": family[family < 0.95].round(2).to_dict()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a run folder with notebooks 01-04 done")
    args = ap.parse_args(argv)
    joint = results.read_predictions(args.run).get("joint")
    details = args.run / "verify_details.csv"
    if joint is None or not details.exists():
        ap.error(
            f"{args.run}: no predictions_joint.csv or verify_details.csv (run notebooks 01-04)"
        )
    det = detector.default()
    splits = {}
    for split in ("val", "test"):
        table, a, b = pairs.load_pairs(args.run / "data", split)
        print(f"{split}: describing and verifying {len(table)} pairs", flush=True)
        table = pd.concat([table.reset_index(drop=True), pair_correlations(a, b, det)], axis=1)
        strong = table[table["inliers"] >= 15]
        print(f"  {len(strong)} pairs with >= 15 inliers: ROC-AUC texture "
              f"{roc_auc_score(strong['label'], strong['texture']):.3f}, inlier count "
              f"{roc_auc_score(strong['label'], strong['inliers']):.3f}")  # fmt: skip
        splits[split] = table
    feats = baselines.fuse_features(joint, pd.read_csv(details))
    for split, table in splits.items():
        part = feats[feats["split"] == split].set_index("pair_id")
        splits[split] = part.join(table.set_index("pair_id")[["texture"]], validate="1:1")
    val, test = splits["val"], splits["test"]
    for name, cols in (("without", baselines.FUSE_COLUMNS),
                       ("with the texture", [*baselines.FUSE_COLUMNS, "texture"])):  # fmt: skip
        print(f"fused {name}:", fused_with(val, test, cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
