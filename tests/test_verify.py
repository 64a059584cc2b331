"""Keypoint verification: one-to-one matches, plausible fits, evidence against chance, symmetry."""

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from bfutils import calibrate, descriptors, verify

SETTINGS = calibrate.KEYPOINTS
THIN = SETTINGS | {"min_extent": calibrate.MIN_EXTENT}  # calibrate --min-extent


def _record(image):
    pts, desc, scale = descriptors.keypoints(image, SETTINGS)
    return {"points": pts, "desc": desc, "kp_scale": np.float32(scale),
            "shape": np.int32(image.shape[:2])}  # fmt: skip


@pytest.fixture(scope="module")
def tissue():
    return np.ascontiguousarray(skdata.immunohistochemistry()[50:350, 60:360])


def test_one_to_one_keeps_a_single_match_per_target_point():
    rng = np.random.default_rng(0)
    target = rng.random((20, 8)).astype(np.float32)
    # 6 source points all closest to target point 3 (the collapsed case), 4 honest ones
    source = np.vstack([target[3] + 0.001 * rng.random((6, 8)), target[10:14] + 0.0001])
    ia, ib = verify.one_to_one(source.astype(np.float32), target, ratio=0.9)
    assert len(ib) == len(set(ib.tolist()))
    assert sorted(ib.tolist()) == [3, 10, 11, 12, 13]
    # the closest of the six competing source points won target 3
    d = np.linalg.norm(source[:6] - target[3], axis=1)
    assert ia[ib == 3][0] == int(np.argmin(d))


@pytest.mark.parametrize(
    ("lin", "ok"),
    [
        ([[0.9, -0.3], [0.3, 0.9]], True),  # rotation + zoom
        ([[1.2, 0.15], [0.0, 0.9]], True),  # aspect change and mild shear
        ([[1.0, 3.0], [0.0, 0.3]], False),  # strong shear: no editor does this
        ([[1.0, 1.0], [1.0, 1.0001]], False),  # collapse onto a line
        ([[-1.0, 0.0], [0.0, 1.0]], False),  # reflection inside a direct fit
        ([[40.0, 0.0], [0.0, 40.0]], False),  # 40x zoom
    ],
)
def test_implausible_fits_are_rejected(lin, ok):
    affine = np.hstack([np.asarray(lin, float), [[5.0], [7.0]]])
    assert (verify.plausible(affine) == "") is ok


def test_evidence_is_calibrated_against_chance():
    # the same 6 inliers: strong among 7 matches on a large area, nothing among 60 on a small one
    assert verify.nfa_evidence(6, 7, tolerance_px=4, area_px=200 * 200) > 3
    assert verify.nfa_evidence(6, 60, tolerance_px=4, area_px=40 * 40) == 0
    assert verify.nfa_evidence(4, 4, 4, 1e6) == 0  # under the minimum count
    more = [verify.nfa_evidence(k, 40, 4, 150 * 150) for k in (6, 10, 20)]
    assert more == sorted(more) and more[-1] > more[0]


def test_verify_finds_rotated_mirrored_crop_with_its_box(tissue):
    h, w = tissue.shape[:2]
    crop = tissue[40:240, 60:260]
    m = cv2.getRotationMatrix2D((100, 100), 20, 0.8)
    copy = cv2.warpAffine(np.ascontiguousarray(crop[:, ::-1]), m, (200, 200),
                          borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    ev = verify.verify(_record(tissue), _record(copy), SETTINGS, "a", "b")
    assert ev["mirror"] and ev["inliers"] >= 15 and ev["evidence"] > 5
    x0, y0, x1, y1 = (float(v) for v in ev["box_a"].split(","))
    assert 40 <= x0 + 20 and x1 <= 260 + 20 and 20 <= y0 + 20 and y1 <= 240 + 20
    assert "mirrored" in ev["transform"]


def test_the_map_sends_a_pixels_onto_b_pixels_either_way(tissue):
    # b: a mirrored crop of a, enlarged 1.5x; a's pixel (x, y) in the crop is at
    # ((199 - (x - 60)) * 1.5 + 0.25, (y - 40) * 1.5 + 0.25) in b (cv2.resize keeps centres)
    crop = np.ascontiguousarray(tissue[40:240, 60:260][:, ::-1])
    copy = cv2.resize(crop, (300, 300), interpolation=cv2.INTER_CUBIC)
    ra, rb = _record(tissue), _record(copy)
    ab = verify.verify(ra, rb, SETTINGS, "a", "b", with_map=True)
    ba = verify.verify(rb, ra, SETTINGS, "b", "a", with_map=True)
    pts = np.array([[80.0, 60.0, 1], [200.0, 90.0, 1], [120.0, 220.0, 1]])
    truth = np.column_stack([(199 - (pts[:, 0] - 60)) * 1.5 + 0.25, (pts[:, 1] - 40) * 1.5 + 0.25])
    assert ab["mirror"] and np.abs(pts @ ab["map_ab"].T - truth).max() < 1.0
    back = np.column_stack([truth, np.ones(3)]) @ ba["map_ab"].T
    assert np.abs(back - pts[:, :2]).max() < 1.0
    other = np.ascontiguousarray(skdata.retina()[600:900, 700:1000])
    assert verify.verify(ra, _record(other), SETTINGS, with_map=True)["map_ab"] is None
    assert "map_ab" not in verify.verify(ra, rb, SETTINGS)


def test_verify_is_symmetric(tissue):
    other = np.ascontiguousarray(skdata.retina()[600:900, 700:1000])
    copy = np.ascontiguousarray(np.rot90(tissue[30:200, 30:250]))
    for b in (copy, other):
        ra, rb = _record(tissue), _record(b)
        ab, ba = (
            verify.verify(ra, rb, SETTINGS, "x", "y"),
            verify.verify(rb, ra, SETTINGS, "y", "x"),
        )
        for key in ("inliers", "matches", "evidence", "mirror"):
            assert ab[key] == ba[key]
        assert (ab["box_a"], ab["box_b"]) == (ba["box_b"], ba["box_a"])


def test_unrelated_images_give_no_evidence(tissue):
    other = np.ascontiguousarray(skdata.retina()[600:900, 700:1000])
    assert verify.verify(_record(tissue), _record(other), SETTINGS, "a", "b")["evidence"] == 0


def test_self_similar_finds_a_pasted_region(tissue):
    image = tissue.copy()
    image[200:290, 190:290] = tissue[20:110, 30:130]  # a region pasted elsewhere in the image
    ev = verify.self_similar(_record(image), SETTINGS)
    assert ev["inliers"] >= 8 and ev["evidence"] > 3
    assert verify.self_similar(_record(tissue), SETTINGS)["evidence"] < ev["evidence"]


def test_residual_is_tight_for_a_copy_and_loose_for_a_look_alike(tissue):
    # a copy fits to the pixel; the same tissue deformed elastically (a neighbouring section,
    # a re-acquisition) still matches but its inliers spread over the RANSAC tolerance
    copy = cv2.resize(tissue, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    h, w = tissue.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    warp = cv2.remap(tissue, xx + 2.5 * np.sin(yy / 9), yy + 2.5 * np.cos(xx / 11),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    tight = verify.verify(_record(tissue), _record(copy), SETTINGS, "a", "b")
    loose = verify.verify(_record(tissue), _record(warp), SETTINGS, "a", "c")
    assert tight["inliers"] >= 15 and tight["residual"] < 0.3
    assert loose["residual"] > tight["residual"]
    assert verify.NO_MATCH["residual"] == 1.0


def _synthetic(points: np.ndarray, seed: int) -> dict:
    """A record whose i-th keypoint has a distinctive descriptor shared with the other side."""
    desc = np.random.default_rng(seed).integers(0, 256, (len(points), 128)).astype(np.uint8)
    return {"points": points.astype(np.float32), "desc": desc, "kp_scale": np.float32(1.0),
            "shape": np.int32([400, 400])}  # fmt: skip


def test_a_refused_fit_gives_way_to_the_copy_underneath():
    # 40 matched points: 25 obey a strong shear (no editor's transform: the biggest consensus),
    # 15 a plain shift (the copy). One fit would be refused and the copy lost; the next try on
    # the matches left over finds it.
    rng = np.random.default_rng(1)
    pts_a = rng.uniform(20, 380, (40, 2))
    shear = np.array([[1.0, 3.0], [0.0, 0.3]])
    pts_b = np.vstack([pts_a[:25] @ shear.T * 0.3 + 10, pts_a[25:] + [7.0, -5.0]])
    ra = _synthetic(pts_a, 0)
    rb = _synthetic(pts_b, 0)  # same descriptors: point i matches point i
    ev = verify.verify(ra, rb, SETTINGS, "a", "b")
    assert ev["inliers"] == 15 and ev["evidence"] > 5
    assert "scale 1.00" in ev["transform"]
    single = verify.MAX_FITS
    try:
        verify.MAX_FITS = 1
        assert verify.verify(ra, rb, SETTINGS, "a", "b")["inliers"] == 0
    finally:
        verify.MAX_FITS = single


def _row(n: int, y: float, rng) -> np.ndarray:
    """``n`` points along one text line: a row of lane numbers, 6 px tall."""
    return np.column_stack([np.linspace(30, 370, n), y + rng.uniform(0, 6, n)])


def test_a_shared_row_of_labels_is_not_evidence():
    # two unrelated blots annotated with the same lane numbers: 14 keypoints that fit exactly,
    # all on a 6 px line in both panels
    rng = np.random.default_rng(2)
    row = _row(14, 20, rng)
    ra, rb = _synthetic(row, 0), _synthetic(row + [0.0, 350.0], 0)
    ev = verify.verify(ra, rb, THIN, "a", "b")
    assert ev["evidence"] == 0 and "thin band" in ev["rejected"]
    off = verify.verify(ra, rb, SETTINGS, "a", "b")  # the shipped settings: no check
    assert off["inliers"] == 14 and off["evidence"] > 5


def test_the_copy_under_a_row_of_labels_is_still_found():
    # the labels (14 points) outvote the reused content (9 points spread over the panel)
    rng = np.random.default_rng(3)
    content = rng.uniform(60, 340, (9, 2))
    pts_a = np.vstack([_row(14, 20, rng), content])
    pts_b = np.vstack([pts_a[:14] + [0.0, 350.0], content + [11.0, -6.0]])
    ra, rb = _synthetic(pts_a, 0), _synthetic(pts_b, 0)
    assert verify.verify(ra, rb, SETTINGS, "a", "b")["inliers"] == 14  # the labels win
    ev = verify.verify(ra, rb, THIN, "a", "b")
    assert ev["inliers"] == 9 and ev["evidence"] > 3


def test_a_thin_panel_cut_from_a_large_image_is_not_a_thin_band():
    # b is a 30 px strip (one row of a gel) cut from a: thin in a, but it fills b
    rng = np.random.default_rng(4)
    pts_a = np.column_stack([rng.uniform(20, 380, 14), rng.uniform(100, 122, 14)])
    ra = _synthetic(pts_a, 0)
    rb = _synthetic(pts_a - [0.0, 96.0], 0) | {"shape": np.int32([30, 400])}
    assert verify.thin_band(ra["points"], rb["points"], ra, rb, 0.15) == ""
    ev = verify.verify(ra, rb, THIN, "a", "b")
    assert ev["inliers"] == 14 and ev["evidence"] > 5


def test_thin_band_measures_in_each_panels_own_keypoint_pixels():
    # keypoint pixels are original pixels x kp_scale: a band 30 px tall in a 100 px panel
    # described at 2.24x is 0.30 of its side, not 0.67 (30 x 2.24 / 100)
    pts = np.column_stack([np.linspace(10, 200, 12), np.linspace(0, 30 * 2.24, 12)])
    rec = {"kp_scale": np.float32(2.24), "shape": np.int32([100, 100])}
    assert verify.thin_band(pts, pts, rec, rec, 0.25) == ""
    assert "thin band" in verify.thin_band(pts, pts, rec, rec, 0.35)


def test_a_strip_reused_in_two_stacked_blots_is_why_the_check_is_opt_in():
    # one drawn loading-control strip inside two panels of 4 stacked blot strips: a thin band of
    # both panels, like a row of labels. The check refuses it; the shipped detector finds it.
    from bfutils import detector
    from bfutils.data import graphics

    def strip(seed):
        return graphics.blot(np.random.default_rng(seed), np.random.default_rng(seed + 100))

    def stack(seeds, at):
        parts = [strip(s) for s in seeds]
        parts.insert(at, strip(0))  # the reused strip
        w = min(p.shape[1] for p in parts)
        return np.ascontiguousarray(np.vstack([cv2.resize(p, (w, p.shape[0])) for p in parts]))

    ra, rb = _record(stack([10, 11, 12], 1)), _record(stack([30, 31, 32], 2))
    refused = verify.verify(ra, rb, THIN, "a", "b")
    assert refused["evidence"] == 0 and "thin band" in refused["rejected"]
    shipped = detector.default().keypoints
    assert shipped.get("min_extent", 0.0) == 0.0
    found = verify.verify(ra, rb, shipped, "a", "b")
    assert found["inliers"] >= 15 and found["evidence"] > 10


def test_the_check_is_a_detector_setting_off_by_default():
    assert "min_extent" not in calibrate.base_detector().keypoints
    assert calibrate.base_detector(min_extent=0.15).keypoints["min_extent"] == 0.15
