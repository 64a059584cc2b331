"""Aligned grey-level agreement (bfutils.aligned): a copy agrees where the fit lays it over its
source, whatever monotone change its grey levels went through; a misplaced fit or another
picture does not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from bfutils import aligned, descriptors, detector, localfeat, verify
from bfutils.calibrate import base_detector


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return skimage.data.astronaut()  # 512 x 512 RGB, ships with scikit-image


def _crop_map(x0: float, y0: float, side: int, shown: int) -> np.ndarray:
    """Map from the pixels of a ``side`` square crop at (x0, y0), shown at ``shown`` px, to the
    source's pixels (pixel centres kept, as cv2.resize does)."""
    s = side / shown
    return np.array([[s, 0, x0 + 0.5 * (s - 1)], [0, s, y0 + 0.5 * (s - 1)]])


def _partial_copy(src: np.ndarray) -> np.ndarray:
    crop = cv2.resize(src[100:356, 150:406], (90, 90), interpolation=cv2.INTER_AREA)
    gamma = 255.0 * (crop / 255.0) ** 1.4  # re-exported with another gamma
    return gamma.clip(0, 255).astype(np.uint8)


def test_a_partial_copy_agrees_whatever_its_gamma(source):
    copy = _partial_copy(source)
    m = _crop_map(150, 100, 256, 90)
    rho, n = aligned.agreement(
        aligned.patch(copy), aligned.patch(source), m, copy.shape[:2], source.shape[:2]
    )
    assert rho > 0.95
    assert n >= aligned.MIN_OVERLAP


def test_agreement_is_the_same_in_either_order(source):
    copy = _partial_copy(source)
    m = np.vstack([_crop_map(150, 100, 256, 90), [0, 0, 1]])
    pa, pb = aligned.patch(copy), aligned.patch(source)
    ab = aligned.agreement(pa, pb, m[:2], copy.shape[:2], source.shape[:2])
    ba = aligned.agreement(pb, pa, np.linalg.inv(m)[:2], source.shape[:2], copy.shape[:2])
    assert ab == pytest.approx(ba)


def test_a_misplaced_fit_or_another_picture_does_not_agree(source):
    copy = _partial_copy(source)
    m = _crop_map(150, 100, 256, 90)
    pa = aligned.patch(copy)
    off = m.copy()
    off[0, 2] += 40  # 40 source px to the side
    rho_off, _ = aligned.agreement(pa, aligned.patch(source), off, copy.shape[:2], source.shape[:2])
    other = skimage.data.chelsea()
    rho_other, _ = aligned.agreement(pa, aligned.patch(other), m, copy.shape[:2], other.shape[:2])
    assert rho_off < 0.6
    assert abs(rho_other) < 0.3


def test_no_fit_or_too_little_overlap_gives_zero(source):
    copy = _partial_copy(source)
    pa, pb = aligned.patch(copy), aligned.patch(source)
    assert aligned.agreement(pa, pb, None, copy.shape[:2], source.shape[:2]) == (0.0, 0)
    far = _crop_map(150, 100, 256, 90)
    far[:, 2] += 480  # laid almost entirely outside the source
    rho, n = aligned.agreement(pa, pb, far, copy.shape[:2], source.shape[:2])
    assert rho == 0.0
    assert n < aligned.MIN_OVERLAP


def test_patch_keeps_small_images_and_shrinks_large_ones(source):
    assert aligned.patch(source).shape == (aligned.PATCH, aligned.PATCH)
    small = source[:40, :30]
    assert aligned.patch(small).shape == (40, 30)
    assert aligned.patch(small[..., 0]).dtype == np.uint8


@pytest.mark.parametrize("mirror", [False, True])
def test_keypoint_maps_lay_a_copy_over_its_source(source, mirror):
    """The SIFT and XFeat fits' maps (original pixels, a -> b) put the copy where it came
    from, mirrored or not, in either order; the fused feature then sees the agreement."""
    copy = source[60:380, 100:420]
    copy = copy[:, ::-1].copy() if mirror else copy
    det = base_detector(aligned=True)
    recs = descriptors.compute([copy, source], det)
    ev = verify.verify(recs[0], recs[1], det.keypoints, sha_a="a", sha_b="b", with_map=True)
    xf = localfeat.verify(recs[0], recs[1])
    xf_back = localfeat.verify(recs[1], recs[0])
    corner = np.array([319.0 if mirror else 0.0, 0.0, 1.0])  # the copy's top-left source px
    # SIFT to the pixel; XFeat works at 160-320 px (1 working px = 1.6 source px here)
    for m, tolerance in ((ev["map_ab"], 1.0), (xf["xf_map"], 8.0)):
        assert m is not None
        assert m @ corner == pytest.approx([100.0, 60.0], abs=tolerance)
    back = np.linalg.inv(np.vstack([xf_back["xf_map"], [0, 0, 1]]))[:2]
    assert back == pytest.approx(xf["xf_map"], abs=1e-6)
    feats = detector.pair_features(recs[0], recs[1], ev, det)
    assert feats["al_sim"] > 0.9
    assert feats["al_sim"] == pytest.approx(
        detector.pair_features(
            recs[1],
            recs[0],
            ev | {"map_ab": np.linalg.inv(np.vstack([ev["map_ab"], [0, 0, 1]]))[:2]},
            det,
        )["al_sim"]
    )


def test_a_shared_flat_background_is_no_agreement():
    """Two unrelated panels of sparse bright cells on black: the background, flat in both,
    must not make them agree."""
    rng = np.random.default_rng(0)

    def cells() -> np.ndarray:
        image = np.zeros((96, 96), np.uint8)
        for x, y in rng.integers(8, 88, (12, 2)):
            cv2.circle(image, (int(x), int(y)), 4, int(rng.integers(120, 255)), -1)
        return image

    a, b = cells(), cells()
    rho, _ = aligned.agreement(a, b, np.array([[1.0, 0, 0], [0, 1, 0]]), a.shape, b.shape)
    assert abs(rho) < 0.3
    same, _ = aligned.agreement(a, a, np.array([[1.0, 0, 0], [0, 1, 0]]), a.shape, a.shape)
    assert same > 0.95
