"""The finder end to end on a small folder: planted copies found, symmetric, bad files listed,
the cache reused, and the report rendered in headless Chromium."""

import os
import shutil
import subprocess

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data as skdata

from bfutils import find, findreport, panels


def _save(folder, name, array, **kw):
    Image.fromarray(array).save(folder / name, **kw)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six good panels (two planted copies, one partial crop) and every kind of bad file."""
    d = tmp_path_factory.mktemp("panels")
    ihc = skdata.immunohistochemistry()
    retina = skdata.retina()
    _save(d, "tissue.png", ihc[:300, :300])
    _save(d, "tissue_copy.jpg", np.ascontiguousarray(np.rot90(ihc[20:280, 20:280])), quality=80)
    _save(d, "big.png", retina[300:900, 300:900])
    _save(d, "big_part.png", retina[450:650, 500:700])  # a 11 % crop of big.png
    _save(d, "cells.png", skdata.cell()[:200, :200])  # grayscale file
    _save(d, "other.png", ihc[-250:, -250:])
    rgba = np.dstack([skdata.coffee()[:150, :150], np.full((150, 150), 255, np.uint8)])
    _save(d, "rgba.png", rgba)
    Image.fromarray(skdata.camera()[:128, :128].astype(np.uint16) * 257).save(d / "deep.tif")
    pages = [Image.fromarray(skdata.astronaut()[:100, :100]), Image.fromarray(ihc[300:400, :100])]
    pages[0].save(d / "stack.tif", save_all=True, append_images=pages[1:])
    (d / "empty.png").write_bytes(b"")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    _save(d, "tiny.png", ihc[:10, :12])
    Image.new("1", (9000, 9000)).save(d / "huge.png")  # over the decompression limit
    _save(d, "blank.png", np.full((120, 120, 3), 3, np.uint8))
    _save(d, "blank2.png", np.full((90, 140, 3), 4, np.uint8))
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def result(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    cache = tmp_path_factory.mktemp("cache")
    table = find.find(folder, out=out, cache=cache, show_progress=False)
    return table, out, cache


def _pair(table, a, b):
    rows = table[((table["a"] == a) & (table["b"] == b)) | ((table["a"] == b) & (table["b"] == a))]
    return rows.iloc[0] if len(rows) else None


def test_planted_copies_are_flagged_first(result):
    table, _, _ = result
    top = {frozenset(p) for p in table[table["flagged"]][["a", "b"]].itertuples(index=False)}
    assert frozenset({"tissue.png", "tissue_copy.jpg"}) in top
    assert frozenset({"big.png", "big_part.png"}) in top  # an 11 % crop
    copy = _pair(table, "tissue.png", "tissue_copy.jpg")
    assert copy["inliers"] >= 10 and "rot" in copy["transform"]
    part = _pair(table, "big.png", "big_part.png")
    x0, y0, x1, y1 = (float(v) for v in part["box_a"].split(","))
    assert 150 <= x0 and x1 <= 450 and 100 <= y0 and y1 <= 400  # the crop's place in big.png
    assert table["score"].is_monotonic_decreasing


def test_unrelated_and_blank_panels_are_not_flagged(result):
    table, _, _ = result
    flagged = table[table["flagged"]]
    assert not ({"blank.png", "blank2.png"} & (set(flagged["a"]) | set(flagged["b"])))
    blank = _pair(table, "blank.png", "blank2.png")
    assert blank is not None and blank["score"] == 0 and "blank" in blank["note"]
    assert len(flagged) <= 3


def test_bad_files_are_listed_with_reasons_and_nothing_else_is_lost(result):
    table, out, _ = result
    skipped = pd.read_csv(out / "skipped.csv")
    reasons = dict(zip(skipped["file"], skipped["reason"], strict=True))
    assert set(reasons) == {"empty.png", "corrupt.png", "tiny.png", "huge.png"}
    assert "empty" in reasons["empty.png"] and "too small" in reasons["tiny.png"]
    assert "max_pixels" in reasons["huge.png"]
    seen = set(table["a"]) | set(table["b"])
    good = {
        "tissue.png",
        "tissue_copy.jpg",
        "big.png",
        "big_part.png",
        "cells.png",
        "other.png",
        "rgba.png",
        "deep.tif",
        "stack.tif#p0",
        "stack.tif#p1",
        "blank.png",
        "blank2.png",
    }
    assert table.attrs["n_panels"] == len(good) and good <= seen
    report = (out / "report.html").read_text()
    for name in reasons:
        assert name in report


def test_pairs_csv_has_the_promised_columns(result):
    _, out, _ = result
    pairs = pd.read_csv(out / "pairs.csv")
    needed = ["a", "b", "score", "pair_score", "inliers", "transform", "box_a", "box_b"]
    assert list(pairs.columns[:8]) == needed


def test_rescan_uses_the_cache(folder, result, tmp_path):
    _, _, cache = result
    before = sorted(p.name for p in cache.rglob("*.npz"))
    shutil.copy(folder / "other.png", tmp_path / "x.png")
    _save(tmp_path, "y.png", skdata.retina()[:200, :200])
    table = find.find(tmp_path, cache=cache, show_progress=False)
    after = sorted(p.name for p in cache.rglob("*.npz"))
    assert len(after) == len(before) + 1  # x.png has other.png's bytes: no new descriptors
    assert len(table) == 1


def test_score_does_not_depend_on_the_order_of_the_files(folder, result):
    table, _, cache = result
    rows = table.set_index(["a", "b"])
    det = find.detector.default()
    from bfutils import descriptors, panels

    items, _ = panels.scan(folder)
    recs, _ = descriptors.describe(items, det, cache / "descriptors" / det.cache_key(),
                                   show_progress=False)  # fmt: skip
    by_key = {p.key: recs[p.sha] for p in items if p.sha in recs}
    shas = {p.key: p.sha for p in items}
    pairs = [(a, b) for a, b in rows.index if a != b][:6]
    fwd = find.score_pairs(pairs, by_key, shas, det, show_progress=False)
    bwd = find.score_pairs([(b, a) for a, b in pairs], by_key, shas, det, show_progress=False)
    f = fwd.set_index(["a", "b"])["score"]
    b = bwd.set_index(["b", "a"])["score"].rename_axis(["a", "b"])
    assert np.array_equal(f.sort_index().to_numpy(), b.sort_index().to_numpy())


def test_self_check_finds_a_region_pasted_inside_one_image(tmp_path):
    ihc = skdata.immunohistochemistry()[:300, :300].copy()
    ihc[190:290, 180:290] = ihc[10:110, 20:130]
    _save(tmp_path, "pasted.png", ihc)
    _save(tmp_path, "clean.png", skdata.retina()[300:600, 300:600])
    table = find.find(tmp_path, self_check=True, cache=False, show_progress=False)
    row = _pair(table, "pasted.png", "pasted.png")
    assert row is not None and row["flagged"]
    clean = _pair(table, "clean.png", "clean.png")
    assert clean is None or not clean["flagged"]


def test_self_check_without_repeated_regions_still_writes_the_report(tmp_path):
    # an empty self-check used to turn "flagged" into an object column (~ then gave -1/-2)
    panels_dir, out = tmp_path / "panels", tmp_path / "out"
    panels_dir.mkdir()
    _save(panels_dir, "a.png", skdata.retina()[300:600, 300:600])
    _save(panels_dir, "b.png", skdata.immunohistochemistry()[:256, :256])
    table = find.find(panels_dir, out=out, self_check=True, cache=False, show_progress=False)
    assert table["flagged"].dtype == bool and (out / "report.html").is_file()


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail("chromium is not installed; CI needs `apt-get install -y chromium`")
    pytest.skip("chromium not installed (apt-get install -y chromium) to render the report")


def test_report_renders_in_headless_chromium(result, tmp_path):
    table, out, _ = result
    browser = _chromium()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    url = (out / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,1600", url],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    assert shot.exists() and not findreport.is_blank_screenshot(shot)
    dom = subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True, text=True,
                         timeout=120).stdout  # fmt: skip
    for row in table[table["flagged"]].itertuples():
        assert row.a in dom and row.b in dom
    assert dom.count('class="pair"') == int(table["flagged"].sum())
    assert "data:image/jpeg;base64," in dom  # images embedded, no external files


def test_keypoint_votes_shortlist_rotated_mirrored_and_partial_copies(monkeypatch):
    from bfutils import descriptors, keyvote
    from bfutils.calibrate import KEYPOINTS

    ihc = skdata.immunohistochemistry()
    images = {
        "src": ihc[:300, :300],
        "part": np.ascontiguousarray(np.rot90(ihc[150:300, 100:260])[:, ::-1]),  # 27 %, turned
        "other": ihc[-300:, -300:],
        "retina": skdata.retina()[300:600, 300:600],
        "cells": np.dstack([skdata.cell()[:250, :250]] * 3),
    }
    recs = {}
    for key, image in images.items():
        pts, desc, scale = descriptors.keypoints(np.ascontiguousarray(image), KEYPOINTS)
        recs[key] = {"points": pts, "desc": desc}
    keys = sorted(recs)
    exact, _ = keyvote.shortlist(keys, recs, k=1, show_progress=False)
    assert max(exact, key=exact.get) == ("part", "src")
    monkeypatch.setattr(keyvote, "EXACT_MAX", 10)  # the inverted-file path finds it too
    approx, _ = keyvote.shortlist(keys, recs, k=1, show_progress=False)
    assert max(approx, key=approx.get) == ("part", "src")


def _labelled(image: np.ndarray, text: str = "1  2  3  4  5") -> np.ndarray:
    """A panel with lane numbers drawn over its top edge, in one font and colour, as figures do."""
    out = cv2.resize(np.ascontiguousarray(image), (240, 240), interpolation=cv2.INTER_AREA)
    cv2.putText(out, text, (8, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 0), 2, cv2.LINE_AA)
    return out


def test_common_keypoints_flag_look_ups_found_in_many_other_images():
    from bfutils import keyvote

    owners = np.array([0, 0, 1, 2, 3, 4])
    # look-up 0 (image 0) has near twins in images 1, 2 and 3; look-up 1 only in image 1 (and
    # in its own image, which does not count); look-up 2 has three images, but far away
    dist = np.array([[0.0, 0.01, 0.02, 0.03], [0.0, 0.01, 0.02, 0.5], [0.0, 0.3, 0.4, 0.5]])
    ids = np.array([[0, 2, 3, 4], [1, 0, 2, 5], [2, 3, 4, 5]])
    common = keyvote.common_keypoints(dist, ids, owners, np.array([0, 0, 1]), d2=0.08, images=3)
    assert common.tolist() == [True, False, False]


def test_shared_annotations_do_not_make_unrelated_panels_a_pair():
    from bfutils import descriptors, verify
    from bfutils.calibrate import KEYPOINTS, MIN_EXTENT

    tiles = []
    for image in (skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket(),
                  np.dstack([skdata.camera()] * 3), skdata.immunohistochemistry()):  # fmt: skip
        h, w = image.shape[:2]
        tiles += [image[: h // 2, : w // 2], image[h // 2 :, w // 2 :]]
    images = {f"p{i:02d}": _labelled(t) for i, t in enumerate(tiles)}  # 12 unrelated panels
    images["copy"] = _labelled(np.ascontiguousarray(tiles[-1][::-1]), "a")  # reused, flipped
    recs = {}
    for key, image in images.items():
        pts, desc, scale = descriptors.keypoints(image, KEYPOINTS)
        recs[key] = {"points": pts, "desc": desc, "kp_scale": np.float32(scale),
                     "shape": np.int32(image.shape[:2])}  # fmt: skip
    votes, common = find.keyvote.shortlist(sorted(recs), recs, k=3, show_progress=False)
    kept = {k: find.without(r, common[k]) for k, r in recs.items()}
    unrelated = [(a, b) for a in images for b in images if "copy" != a < b != "copy"]
    raw = KEYPOINTS  # the shipped settings; thin: with the opt-in check of verify.thin_band
    thin = KEYPOINTS | {"min_extent": MIN_EXTENT}

    def fitted(records, settings):
        return sum(verify.verify(records[a], records[b], settings)["evidence"] > 0
                   for a, b in unrelated)  # fmt: skip

    assert len(unrelated) == 66
    assert fitted(recs, raw) >= 40  # the lane numbers alone fit: the defect (56 when written)
    assert fitted(kept, raw) <= 12  # 7 when written
    assert fitted(recs, thin) <= 12  # the row of labels is a thin band: 10 when written
    assert fitted(kept, thin) <= 6  # both: 3 when written
    assert ("copy", "p11") in votes  # the reused tissue (flipped, another label) still pairs
    assert verify.verify(kept["copy"], kept["p11"], KEYPOINTS)["evidence"] > 10


def test_sparse_fluorescence_is_content_and_a_hot_pixel_is_not():
    from bfutils import panels

    field = np.full((140, 150, 3), 11, np.uint8)  # dark background, a few bright nuclei
    for y, x in ((30, 40), (90, 100), (110, 30)):
        cv2.circle(field, (x, y), 3, (140, 140, 140), -1)
    assert not panels.is_blank(field)
    black = np.full((60, 60, 3), 2, np.uint8)
    black[10, 10] = 255
    assert panels.is_blank(black)


def test_queries_against_a_reference_library(tmp_path):
    queries, library = tmp_path / "manuscript", tmp_path / "library"
    queries.mkdir(), library.mkdir()
    retina, ihc = skdata.retina(), skdata.immunohistochemistry()
    _save(
        queries, "fig2c.jpg", np.ascontiguousarray(retina[450:650, 500:700][:, ::-1]), quality=75
    )  # fmt: skip  (a mirrored 11 % crop of a published image)
    _save(queries, "fig3a.png", skdata.coffee()[:200, :200])
    _save(library, "published.png", retina[300:900, 300:900])
    _save(library, "published_twin.png", retina[300:900, 300:900])  # library duplicates
    _save(library, "tissue.png", ihc[:300, :300])
    table = find.find(queries, reference=library, cache=False, show_progress=False)
    flagged = table[table["flagged"]]
    pairs = {frozenset((a, b)) for a, b in zip(flagged["a"], flagged["b"], strict=True)}
    assert frozenset(("fig2c.jpg", "ref/published.png")) in pairs
    assert "mirrored" in _pair(table, "fig2c.jpg", "ref/published.png")["transform"]
    # never library against library, nor (by default) manuscript against manuscript
    for a, b in zip(table["a"], table["b"], strict=True):
        assert a.startswith("ref/") != b.startswith("ref/")
    assert not any("fig3a.png" in p for p in pairs)


def test_a_panel_reused_twice_is_flagged_with_both_partners(tmp_path):
    # each copy is the other's rival; near-identical copies must not hide each other
    ihc = skdata.immunohistochemistry()
    _save(tmp_path, "source.png", ihc[:300, :300])
    crop = np.ascontiguousarray(ihc[60:260, 40:240])
    _save(tmp_path, "fig2b.jpg", crop, quality=85)
    _save(tmp_path, "fig5d.jpg", crop, quality=70)
    _save(tmp_path, "unrelated.png", skdata.coffee()[:220, :220])
    table = find.find(tmp_path, cache=False, show_progress=False)
    for a, b in (("fig2b.jpg", "source.png"), ("fig5d.jpg", "source.png"),
                 ("fig2b.jpg", "fig5d.jpg")):  # fmt: skip
        assert _pair(table, a, b)["flagged"], (a, b)
    assert not table[table["flagged"]].isin(["unrelated.png"]).any().any()


def test_a_thin_strip_is_a_panel_and_finds_its_source(tmp_path):
    # real reused panels include strips like 40 x 14 px: fewer than 16 px on one side, but as
    # many pixels as a 24 px square; only panels with less area than 16 x 16 are too small
    ihc = skdata.immunohistochemistry()
    _save(tmp_path, "source.png", ihc[60:220, 40:200])  # a 160 px panel
    _save(tmp_path, "strip.jpg", np.ascontiguousarray(ihc[120:134, 80:160]), quality=85)
    _save(tmp_path, "unrelated.png", skdata.coffee()[:220, :220])
    _save(tmp_path, "tissue.png", ihc[-250:, -250:])
    _save(tmp_path, "line.png", ihc[:6, :200])  # a line, not a panel
    table = find.find(tmp_path, cache=False, show_progress=False)
    skipped = table.attrs["skipped"]
    assert list(skipped["file"]) == ["line.png"] and "under 8 px" in skipped["reason"][0]
    strip = table[(table["a"] == "strip.jpg") | (table["b"] == "strip.jpg")]
    assert {strip.iloc[0]["a"], strip.iloc[0]["b"]} == {"source.png", "strip.jpg"}
    assert strip.iloc[0]["flagged"]


@pytest.mark.parametrize(
    ("h", "w", "why"),
    [
        (14, 40, ""),
        (16, 16, ""),
        (10, 12, "fewer pixels"),
        (15, 15, "fewer pixels"),
        (7, 400, "under 8 px"),
    ],  # fmt: skip
)
def test_too_small_bounds_the_area_and_the_thinnest_side(h, w, why):
    reason = panels.too_small(h, w)
    assert (why in reason and reason.startswith("too small")) if why else reason == ""


@pytest.fixture(scope="module")
def graphics_scan(tmp_path_factory):
    """Drawn blots, gels and dot plots of two experiments each (four replicates: distinct
    pictures that look alike), a cropped, re-contrasted blot copy and a shrunk dot-plot copy."""
    from bfutils.data import graphics, load_records

    d = tmp_path_factory.mktemp("graphics")
    recs = load_records("graphics", groups=2, replicates=4)
    drawn = {r.image_id: graphics.pixels(r) for r in recs.itertuples()}
    for image_id, pixels in drawn.items():
        _save(d, image_id.replace(":", "_") + ".png", pixels)
    blot = drawn["graphics:blot:g00:r0"]
    part = blot[:, blot.shape[1] // 4 :]  # three quarters of the lanes, gamma 0.7
    _save(d, "copy_blot.jpg", (255 * (part / 255.0) ** 0.7).astype(np.uint8), quality=75)
    dot = cv2.resize(drawn["graphics:dotplot:g00:r1"], None, fx=0.6, fy=0.6,
                     interpolation=cv2.INTER_AREA)  # fmt: skip
    _save(d, "copy_dot.jpg", dot, quality=70)
    return find.find(d, cache=False, show_progress=False)


def _partners(table, name):
    mine = table[(table["a"] == name) | (table["b"] == name)]
    return [b if a == name else a for a, b in zip(mine["a"], mine["b"], strict=True)], mine


def test_a_reused_blot_is_flagged_with_its_source_first(graphics_scan):
    partners, mine = _partners(graphics_scan, "copy_blot.jpg")
    assert partners[0] == "graphics_blot_g00_r0.png"
    assert mine.iloc[0]["flagged"] and mine.iloc[0]["inliers"] >= 20


def test_replicate_dot_plots_are_not_flagged(graphics_scan):
    # they share axes, gate and labels and look alike as a whole (uncentred copy cosine up to
    # 0.96): with find.SAME_COPY_COSINE at 0.95 they were not each other's rivals and six of
    # the twelve pairs were flagged at 0.94-0.99
    both = graphics_scan["a"].str.startswith("graphics_dotplot") & graphics_scan[
        "b"
    ].str.startswith("graphics_dotplot")
    assert not graphics_scan.loc[both, "flagged"].any()
    partners, mine = _partners(graphics_scan, "copy_dot.jpg")
    assert partners[0] == "graphics_dotplot_g00_r1.png" and mine.iloc[0]["flagged"]
