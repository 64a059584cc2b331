"""Grey thumbnails in 8 orientations: a re-contrasted, recoloured, blurred or turned copy of a
sparse panel correlates with its source, an unrelated or neighbouring panel does not, the
similarity is symmetric, a blank panel correlates with nothing, and the shortlist uses it."""

import cv2
import numpy as np
from skimage import data as skdata

from bfutils import find, thumbs


def _dots(seed: int, n: int = 12, side: int = 128) -> np.ndarray:
    """A sparse fluorescence-like panel: a few blurred bright nuclei on black."""
    rng = np.random.default_rng(seed)
    img = np.zeros((side, side), np.float32)
    for x, y in rng.integers(8, side - 8, size=(n, 2)):
        cv2.circle(img, (int(x), int(y)), int(rng.integers(3, 6)), 200.0, -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.5) + rng.normal(8, 2, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _copies(src: np.ndarray) -> dict[str, np.ndarray]:
    levels = np.clip((src.astype(np.float32) / 255) ** 0.6 * 255 * 1.8, 0, 255).astype(np.uint8)
    magenta = np.dstack([src, np.zeros_like(src), src])
    return {
        "levels + gamma": levels,
        "false colour": magenta,
        "blur, mirrored": np.ascontiguousarray(cv2.GaussianBlur(src, (0, 0), 2.0)[:, ::-1]),
        "shrunk to 40 px, rot90": np.ascontiguousarray(
            np.rot90(cv2.resize(src, (40, 40), interpolation=cv2.INTER_AREA))
        ),
    }


def test_copies_of_a_sparse_panel_correlate_and_other_panels_do_not():
    src = _dots(0)
    t = thumbs.thumbnail(src)
    assert t.shape == (thumbs.SIDE, thumbs.SIDE) and t.dtype == np.uint8
    worst_copy = min(thumbs.similarity(t, thumbs.thumbnail(c)) for c in _copies(src).values())
    others = [_dots(seed) for seed in range(1, 6)]
    # a neighbouring tile: half of it is the source shifted by 40 % of the side
    shifted = np.roll(src, 52, axis=1)
    shifted[:, :52] = _dots(9)[:, :52]
    best_other = max(thumbs.similarity(t, thumbs.thumbnail(o)) for o in [*others, shifted])
    assert worst_copy >= 0.7 and best_other <= 0.45, (worst_copy, best_other)


def test_similarity_is_symmetric_and_a_blank_panel_correlates_with_nothing():
    src = _dots(0)
    ts = [thumbs.thumbnail(im) for im in [src, *_copies(src).values(), _dots(3)]]
    for a in ts:
        for b in ts:
            assert thumbs.similarity(a, b) == thumbs.similarity(b, a)
    blank = thumbs.thumbnail(np.full((50, 70, 3), 12, np.uint8))
    assert not thumbs.vectors(blank).any()
    assert thumbs.similarity(blank, ts[0]) == 0.0


def test_thumb_shortlist_pairs_each_copy_with_its_source():
    src = _dots(0)
    recs = {"source": {"thumb": thumbs.thumbnail(src)}}
    recs |= {name: {"thumb": thumbs.thumbnail(c)} for name, c in _copies(src).items()}
    for seed in range(1, 6):
        recs[f"other{seed}"] = {"thumb": thumbs.thumbnail(_dots(seed))}
    recs["tissue"] = {"thumb": thumbs.thumbnail(np.ascontiguousarray(skdata.retina()[:300, :300]))}
    found = find.thumb_shortlist(list(recs), list(recs), recs, k=len(_copies(src)))
    for name in _copies(src):
        assert tuple(sorted(("source", name))) in found, name
    assert not any("other" in a and "other" in b for a, b in found if found[(a, b)] > 0.45)
    assert all(1.0 + 1e-5 >= s >= -1.0 - 1e-5 for s in found.values())
