"""Dense search of a small panel inside larger ones (bfutils.dense)."""

import cv2
import numpy as np
from skimage import data as skdata

from bfutils import dense


def _jpeg(image: np.ndarray, quality: int = 70) -> np.ndarray:
    _, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def test_a_shrunk_strip_is_found_where_it_was_cut():
    tissue = dense.grey(skdata.immunohistochemistry()[:300, :300])
    x0, y0, w, h = 90, 140, 120, 42  # 40 % of the panel's width, the 40 x 14 aspect
    strip = cv2.resize(tissue[y0 : y0 + h, x0 : x0 + w], (40, 14), interpolation=cv2.INTER_AREA)
    strip = _jpeg(strip.astype(np.uint8)).astype(np.float32)
    found = dense.best_match(strip, tissue)
    assert found["ncc"] > 0.9
    bx0, by0, bx1, by1 = found["box"]
    assert abs(bx0 - x0) <= 8 and abs(by0 - y0) <= 8  # within one scale step of the cut
    assert abs((bx1 - bx0) - w) <= 0.2 * w and abs(found["scale"] - 0.4) <= 0.08


def test_a_flat_or_oversized_small_panel_has_no_match():
    large = dense.grey(skdata.camera()[:100, :100])
    assert dense.best_match(np.full((14, 40), 80, np.float32), large)["box"] is None
    tall = np.random.default_rng(0).uniform(0, 255, (600, 40)).astype(np.float32)
    assert dense.best_match(tall, large)["ncc"] == -1.0  # no scale fits inside the panel


def test_search_ranks_the_source_first_and_skips_smaller_panels_and_itself():
    ihc = skdata.immunohistochemistry()
    panels = {
        "source": dense.grey(ihc[:300, :300]),
        "tissue": dense.grey(ihc[-300:, -300:]),
        "cells": dense.grey(skdata.cell()[:300, :300]),
        "tiny": dense.grey(ihc[:20, :20]),  # fewer pixels than twice the strip's: skipped
    }
    strip = cv2.resize(panels["source"][200:236, 60:163], (40, 14), interpolation=cv2.INTER_AREA)
    panels["strip"] = strip
    seen = []
    table = dense.search({"strip": strip}, panels, k=2, progress=seen.append)
    row = table.iloc[0]
    assert row["best"] == "source" and row["ncc"] > 0.9
    assert row["margin"] == row["ncc"] - row["second"] and row["margin"] > 0.05
    assert [name for name, _ in row["top"]] == ["source", row["top"][1][0]]
    assert {name for name, _ in row["top"]} <= {"source", "tissue", "cells"}
    assert seen == [1]
    assert table.attrs["searched"] == 3  # source, tissue, cells: not tiny, not the strip itself


def test_flat_background_is_not_a_match():
    # an MRI-like panel: black around one textured patch. OpenCV's normalised correlation of a
    # flat window divides by ~0 and reports up to 1 there; those windows are left out
    rng = np.random.default_rng(1)
    large = np.zeros((200, 200), np.float32)
    large[60:140, 60:140] = rng.uniform(0, 255, (80, 80))
    strip = rng.uniform(0, 255, (14, 40)).astype(np.float32)  # unrelated texture
    assert dense.best_match(strip, large)["ncc"] < 0.5


def test_local_spread_matches_a_direct_computation():
    image = np.random.default_rng(0).uniform(0, 255, (30, 40)).astype(np.float32)
    for th, tw in ((5, 7), (6, 8), (14, 40)):
        got = dense._local_std(image, (th, tw))
        ref = [[image[y : y + th, x : x + tw].std() for x in range(40 - tw + 1)]
               for y in range(30 - th + 1)]  # fmt: skip
        np.testing.assert_allclose(got, np.array(ref), atol=1e-3)
