"""How many SIFT inliers a small crop of a larger panel gets, by the keypoint budget.

    python benchmarks/small_regions.py [--keypoints 500 1000 2000]

A panel cut from a small part of a larger image (a thin strip, a 5 % crop) is found only if the
larger image kept keypoints inside that part. SIFT keeps the ``max_keypoints`` strongest of an
image; this prints, for crops of the scikit-image tissue and retina images (JPEG 85, as a figure
would carry them), the inliers and one-to-one matches of :func:`bfutils.verify.verify` with the
shipped detector's settings and each budget, and the time to describe one 300 px image.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import cv2
import numpy as np
from skimage import data as skdata

from bfutils import descriptors, detector, verify

CASES = [  # (name, source image, crop rows, crop columns)
    ("tissue 80x14 of 300 px", "ihc", (120, 134), (80, 160)),
    ("tissue 60x60 of 300 px", "ihc", (100, 160), (80, 140)),
    ("tissue 150x150 of 300 px", "ihc", (50, 200), (50, 200)),
    ("retina 80x80 of 600 px", "retina", (150, 230), (200, 280)),
    ("retina 200x200 of 600 px", "retina", (150, 350), (200, 400)),
]


def _jpeg(image: np.ndarray, quality: int = 85) -> np.ndarray:
    _, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def main(argv: list[str] | None = None) -> None:
    """Print inliers/matches per crop and keypoint budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keypoints", type=int, nargs="+", default=[500, 1000, 2000])
    args = parser.parse_args(argv)
    sources = {
        "ihc": skdata.immunohistochemistry()[:300, :300],
        "retina": skdata.retina()[300:900, 300:900],
    }
    shipped = detector.resolve(None)
    print("default max_keypoints:", shipped.keypoints["max_keypoints"])
    for budget in args.keypoints:
        det = dataclasses.replace(shipped, keypoints={**shipped.keypoints, "max_keypoints": budget})
        t0 = time.perf_counter()
        for _ in range(5):
            descriptors.keypoints(sources["ihc"], det.keypoints)
        ms = (time.perf_counter() - t0) / 5 * 1000
        row = []
        for name, src, (y0, y1), (x0, x1) in CASES:
            image = sources[src]
            crop = _jpeg(np.ascontiguousarray(image[y0:y1, x0:x1]))
            ra, rb = descriptors.compute([image, crop], dataclasses.replace(
                det, preprocess={**det.preprocess, "xfeat": None, "copy": None}))  # fmt: skip
            ev = verify.verify(ra, rb, det.keypoints)
            row.append(f"{name}: {ev['inliers']}/{ev['matches']}")
        print(f"max_keypoints {budget} ({ms:.0f} ms per 300 px image): " + "; ".join(row))


if __name__ == "__main__":
    main()
