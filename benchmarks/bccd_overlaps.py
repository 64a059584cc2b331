"""Whether two BCCD photographs show one field of the smear, shifted.

    python benchmarks/bccd_overlaps.py 391:386 382:395 257:230 [--data ../shared/data/bccd]

The BCCD set (Shenggan 2017) holds captures of one smear whose numbers are not always
consecutive; some show the same cells, the stage moved between them. The planted figure
benchmark counts two such images as distinct sources (as the data README does), so a finder
that pairs them scores a false pair. This prints, for each pair of image numbers, what the
full-size originals (640 x 480) say: one-to-one SIFT matches and the inliers of a RANSAC
similarity fit (2 px), the fitted shift and scale, the share of the first image that the
second covers, and the grey levels' correlation over that overlap (1.0 is the same picture;
two unrelated fields of red cells give about 0).

The fit is plain OpenCV on the originals, on purpose not :func:`bfutils.verify.verify`: this
checks the finder's false pairs, so it must not be the finder grading itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from bfutils import paths


def load(folder: Path, number: int) -> np.ndarray:
    path = folder / f"BloodImage_{number:05d}.jpg"
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise SystemExit(f"{path}: missing or unreadable (BCCD JPEGImages, see the data README)")
    return image


def overlap(a: np.ndarray, b: np.ndarray) -> dict:
    """SIFT similarity fit of b onto a and the grey correlation over the overlap."""
    sift = cv2.SIFT_create(2000)
    ka, da = sift.detectAndCompute(a, None)
    kb, db = sift.detectAndCompute(b, None)
    if da is None or db is None:
        return {"matches": 0, "inliers": 0}
    matches = cv2.BFMatcher(crossCheck=True).match(db, da)
    if len(matches) < 4:
        return {"matches": len(matches), "inliers": 0}
    pb = np.float32([kb[m.queryIdx].pt for m in matches])
    pa = np.float32([ka[m.trainIdx].pt for m in matches])
    fit, mask = cv2.estimateAffinePartial2D(pb, pa, ransacReprojThreshold=2.0)
    if fit is None:
        return {"matches": len(matches), "inliers": 0}
    h, w = a.shape
    warped = cv2.warpAffine(b.astype(np.float32), fit, (w, h))
    inside = cv2.warpAffine(np.ones_like(b), fit, (w, h))
    inside = cv2.erode(inside, np.ones((9, 9), np.uint8), borderValue=0) > 0
    corr = (
        float(np.corrcoef(a[inside].astype(float), warped[inside])[0, 1])
        if inside.sum() > 100
        else 0.0
    )
    return {"matches": len(matches), "inliers": int(mask.sum()),
            "shift": (round(float(fit[0, 2])), round(float(fit[1, 2]))),
            "scale": round(float(np.sqrt(abs(np.linalg.det(fit[:, :2])))), 3),
            "overlap": round(float(inside.mean()), 2), "correlation": round(corr, 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pairs", nargs="+", help="image numbers as A:B, e.g. 391:386")
    ap.add_argument("--data", type=Path, default=paths.shared("bccd"),
                    help="BCCD JPEGImages (default: $BFUTILS_SHARED_DATA/bccd)")  # fmt: skip
    args = ap.parse_args(argv)
    for pair in args.pairs:
        try:
            first, second = (int(x) for x in pair.split(":"))
        except ValueError:
            ap.error(f"{pair!r}: give two image numbers as A:B, e.g. 391:386")
        print(f"{first:05d} {second:05d}", overlap(load(args.data, first), load(args.data, second)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
