"""The thin-strip benchmark plants what it says and scores ranks as the finder ordered them."""

import sys

import cv2
import numpy as np
import pandas as pd
import pytest
from skimage import data as skdata

from bfutils import paths

sys.path.insert(0, str(paths.ROOT / "benchmarks"))
import thin_strips  # noqa: E402  (benchmarks/ is not a package)


@pytest.fixture()
def bench(tmp_path):
    """A planted-benchmark-like folder: 6 distractors of >= 150 px, one query too small."""
    folder = tmp_path / "bench"
    (folder / "panels").mkdir(parents=True)
    ihc = skdata.immunohistochemistry()
    rows = []
    for i in range(6):
        image = np.ascontiguousarray(ihc[i * 60 : i * 60 + 180, i * 50 : i * 50 + 200, ::-1])
        cv2.imwrite(str(folder / "panels" / f"p{i}.png"), image)
        rows.append({"file": f"p{i}.png", "role": "distractor", "width": 200, "height": 180,
                     "image_id": f"ihc:{i}"})  # fmt: skip
    cv2.imwrite(str(folder / "panels" / "q.png"), ihc[:100, :100, ::-1])
    rows.append({"file": "q.png", "role": "query", "width": 100, "height": 100, "image_id": "q"})
    pd.DataFrame(rows).to_csv(folder / "panels.csv", index=False)
    return folder


def test_strips_are_planted_at_the_asked_size_with_their_partners(bench, tmp_path):
    out = tmp_path / "out"
    truth = thin_strips.plant(bench, out, size=(40, 14), n=3, seed=0)
    assert truth["kind"].tolist() == list(thin_strips.KINDS) * 3
    files = {p.name for p in (out / "panels").iterdir()}
    for t in truth.itertuples():
        strip = cv2.imread(str(out / "panels" / t.query))
        assert strip.shape[:2] == (14, 40)
        assert t.partner in files
        if t.kind == "strip and strip":  # the panel the two strips came from is taken out
            assert t.panel not in files
            partner = cv2.imread(str(out / "panels" / t.partner))
            assert 1.4 <= partner.shape[1] / 40 <= 3.6
        else:
            assert t.partner == t.panel
    assert "q.png" in files  # queries are never used as strip sources, and are kept
    assert not truth["panel"].eq("q.png").any()
    pd.testing.assert_frame_equal(truth, pd.read_csv(out / "strips.csv"))


def test_too_few_large_panels_is_a_clear_error(bench, tmp_path):
    with pytest.raises(ValueError, match="distractors of >= 150 px"):
        thin_strips.plant(bench, tmp_path / "out", n=4)


def test_a_strip_region_shows_content_when_one_does():
    image = np.zeros((100, 200, 3), np.uint8)
    image[60:80, 120:180] = 200  # the only content
    x0, y0 = thin_strips._with_content(image, 60, 20, np.random.default_rng(0), tries=2000)
    region = image[y0 : y0 + 20, x0 : x0 + 60]
    assert region.std() >= thin_strips.MIN_CONTENT * image.std()


def test_ranks_follow_the_finders_scores():
    truth = pd.DataFrame({"kind": ["strip of a panel", "strip and strip", "strip of a panel"],
                          "query": ["s0", "s1", "s2"], "partner": ["p0", "s1-partner", "p2"],
                          "panel": ["p0", "x", "p2"], "image_id": ["a", "b", "c"]})  # fmt: skip
    pairs = pd.DataFrame({
        "a": ["s0", "p9", "s1-partner", "s1"],
        "b": ["p0", "s0", "s1", "p5"],
        "score": [0.4, 0.6, 0.9, 0.1],
        "inliers": [12, 3, 30, 0],
        "flagged": [False, False, True, False],
    })  # fmt: skip
    per = thin_strips.score(truth, pairs)
    assert per["rank"].tolist()[:2] == [2, 1] and np.isnan(per["rank"].iloc[2])
    assert per["flagged"].tolist() == [False, True, False]
    table = thin_strips.summary(per)
    assert table.loc["strip of a panel", "rank1"] == 0.0
    assert table.loc["strip of a panel", "top10"] == 0.5
    assert table.loc["strip and strip", "flagged"] == 1.0


def test_the_readme_block_is_written_from_the_runs_summaries(tmp_path):
    rows = []
    for size in ((40, 14), (80, 28)):
        out = tmp_path / f"run{size[0]}"
        (out / "panels").mkdir(parents=True)
        cv2.imwrite(str(out / "panels" / "strip000.jpg"), np.zeros(size[::-1], np.uint8))
        table = pd.DataFrame({"kind": list(thin_strips.KINDS), "n": [30, 30],
                              "rank1": [0.1, 1.0], "top10": [0.2, 1.0], "flagged": [0.0, 0.5],
                              "dense_rank1": [0.9, 0.4], "dense_top10": [0.95, 0.6],
                              "dense_ms_per_search": [3.31, 3.31]})  # fmt: skip
        table.to_csv(out / "summary.csv", index=False)
        rows.append(out)
    block = thin_strips.readme_table(rows)
    lines = block.strip().splitlines()
    assert len(lines) == 4 and lines[2].startswith(
        "| 40 x 14 | 0.100 / 0.200 / 0.000 | 0.900 / 0.950"
    )
    assert lines[3].startswith("| 80 x 28 |") and lines[3].endswith("| 3.3 |")
