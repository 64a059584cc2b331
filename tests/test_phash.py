"""Perceptual hashes in 8 orientations: a blurred, noised or re-contrasted copy is found in any
orientation, the similarity is symmetric, and the shortlist uses it."""

import cv2
import numpy as np
from skimage import data as skdata

from bfutils import find, phash


def _variants():
    ihc = np.ascontiguousarray(skdata.immunohistochemistry()[:256, :256])
    rng = np.random.default_rng(0)
    blurred = cv2.GaussianBlur(ihc, (0, 0), 2.5)
    noised = np.clip(ihc + rng.normal(0, 20, ihc.shape), 0, 255).astype(np.uint8)
    contrast = np.clip((ihc.astype(float) - 60) * 1.6, 0, 255).astype(np.uint8)
    return ihc, {
        "blur, mirrored": np.ascontiguousarray(blurred[:, ::-1]),
        "noise, rot90": np.ascontiguousarray(np.rot90(noised)),
        "contrast, rot180, small": cv2.resize(
            np.rot90(contrast, 2), (64, 64), interpolation=cv2.INTER_AREA
        ),  # fmt: skip
    }


def test_copies_in_any_orientation_hash_alike_and_unrelated_images_do_not():
    ihc, copies = _variants()
    h = phash.hashes(ihc)
    assert h.shape == (8, 8) and h.dtype == np.uint8
    unrelated = [phash.hashes(np.ascontiguousarray(im)) for im in (
        skdata.immunohistochemistry()[256:512, 256:512], skdata.retina()[200:600, 200:600],
        skdata.astronaut()[:256, :256])]  # fmt: skip
    worst_copy = min(phash.similarity(h, phash.hashes(c)) for c in copies.values())
    best_unrelated = max(phash.similarity(h, u) for u in unrelated)
    assert worst_copy >= 0.85 and best_unrelated <= 0.75, (worst_copy, best_unrelated)


def test_similarity_is_symmetric():
    ihc, copies = _variants()
    hashes = [phash.hashes(ihc)] + [phash.hashes(c) for c in copies.values()]
    for a in hashes:
        for b in hashes:
            assert phash.similarity(a, b) == phash.similarity(b, a)


def test_phash_shortlist_pairs_each_copy_with_its_source():
    ihc, copies = _variants()
    recs = {"source": {"phash": phash.hashes(ihc)}}
    recs |= {name: {"phash": phash.hashes(c)} for name, c in copies.items()}
    recs["other"] = {"phash": phash.hashes(np.ascontiguousarray(skdata.retina()[:300, :300]))}
    # k=3: the three copies of one source are each other's equally good neighbours too
    found = find.phash_shortlist(list(recs), list(recs), recs, k=3)
    for name in copies:
        assert tuple(sorted(("source", name))) in found, name
    assert all(1.0 >= s >= 0.0 for s in found.values())
