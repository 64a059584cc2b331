"""Dense template check: a partial crop of a smooth panel, shrunk, turned and re-contrasted,
is found inside its source far above unrelated regions of the same kind of image; the score is
symmetric; a blank panel matches nothing; a detector with other settings is refused."""

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from bfutils import descriptors, template


def _score(a: np.ndarray, b: np.ndarray) -> float:
    return template.similarity(template.patch(a), template.patch(b))


def _smooth(seed: int, side: int = 240) -> np.ndarray:
    """A smooth, keypoint-poor tissue-like panel: blurred noise blobs."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.normal(0, 1, (side, side)).astype(np.float32), (0, 0), 9)
    img = (img - img.min()) / (img.max() - img.min()) * 200 + 20
    return img.astype(np.uint8)


def test_a_partial_crop_is_found_inside_its_source_and_other_regions_are_not():
    src = _smooth(0)
    crop = src[30:180, 60:210]  # 39 % of the area
    edited = np.ascontiguousarray(np.rot90(crop)[:, ::-1])
    edited = cv2.resize(edited, (52, 52), interpolation=cv2.INTER_AREA)
    edited = np.clip(edited.astype(np.float32) * 1.4 - 30, 0, 255).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", edited, [cv2.IMWRITE_JPEG_QUALITY, 60])
    edited = cv2.imdecode(jpg, cv2.IMREAD_GRAYSCALE)
    copy = _score(edited, src)
    others = [_score(_smooth(s)[30:180, 60:210], src) for s in range(1, 6)]
    assert copy > 1.6 * max(others), (copy, others)


def test_scores_are_symmetric_the_same_in_a_batch_and_a_blank_panel_matches_nothing():
    cam = skdata.camera()
    blank = np.full((60, 90, 3), 7, np.uint8)
    panels = [cam, cam[100:300, 50:350], np.ascontiguousarray(cam[::-1, :200]), _smooth(4), blank]
    patches = {str(n): template.patch(p) for n, p in enumerate(panels)}
    pairs = [(a, b) for a in patches for b in patches if a != b]
    prepared = {key: template.prepare(p) for key, p in patches.items()}
    batch = dict(zip(pairs, template.similarities(pairs, prepared), strict=True))
    for a, b in pairs:
        one = template.similarity(patches[a], patches[b])
        assert batch[a, b] == pytest.approx(one, abs=1e-4)
        assert batch[a, b] == pytest.approx(batch[b, a], abs=1e-4)
    assert batch["0", "4"] == 0.0 and batch["4", "1"] == 0.0
    assert batch["0", "1"] > batch["0", "3"]  # a crop of the camera man, an unrelated panel


def test_patch_keeps_the_aspect_and_a_tiny_or_thin_panel_does_not_fail():
    p = template.patch(np.zeros((30, 120, 3), np.uint8) + 50)
    assert p.dtype == np.uint8 and p.shape == (16, template.PATCH)
    for shape in [(9, 9), (8, 200), (300, 10)]:
        rng = np.random.default_rng(0)
        img = rng.integers(0, 255, shape, dtype=np.uint8)
        assert np.isfinite(_score(img, skdata.camera()))


def test_a_detector_with_other_template_settings_is_refused():
    settings = descriptors.template_settings()
    descriptors._check_settings("template patches", settings, settings)  # this version's
    with pytest.raises(ValueError, match="recalibrate"):
        descriptors._check_settings(
            "template patches", settings | {"side": settings["side"] + 8}, settings
        )


def test_a_scan_with_the_template_check_scores_its_pairs_in_one_batch():
    from bfutils import detector, find, verify

    det = detector.default()
    assert "template" not in det.preprocess  # the shipped detector leaves it out (README)
    det.preprocess = det.preprocess | {"template": descriptors.template_settings()}
    ihc = skdata.immunohistochemistry()
    images = {
        "src": ihc[:300, :300],
        "part": np.ascontiguousarray(np.rot90(ihc[40:220, 60:240])),  # 36 % of src, turned
        "other": ihc[-250:, -250:],
    }
    recs = dict(zip(images, descriptors.compute(list(images.values()), det), strict=True))
    assert all(r["tpatch"].dtype == np.uint8 for r in recs.values())
    pairs = [("part", "src"), ("other", "src"), ("other", "part")]
    table = find.verify_pairs(pairs, recs, {k: k for k in recs}, det, show_progress=False)
    tm = dict(zip(zip(table["a"], table["b"], strict=True), table["tm_sim"], strict=True))
    assert tm["part", "src"] > max(tm["other", "src"], tm["other", "part"]) + 1.5, tm
    one = detector.pair_features(recs["src"], recs["part"], dict(verify.NO_MATCH), det)["tm_sim"]
    assert one == pytest.approx(tm["part", "src"], abs=1e-4)
    assert np.isfinite(table["tm_margin"]).all()


def test_calibration_adds_the_template_check_only_when_asked():
    from bfutils import calibrate

    plain, with_it = calibrate.base_detector(), calibrate.base_detector(template=True)
    assert "template" not in plain.preprocess
    assert not any(f.startswith("tm_") for f in plain.features)
    assert with_it.preprocess["template"] == descriptors.template_settings()
    assert {"tm_sim", "tm_margin"} <= set(with_it.features)
