"""compare: one pair with the detector (same score in either order); --folder calls find."""

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from bfutils import compare, detector


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("panels")
    ihc = skdata.immunohistochemistry()
    Image.fromarray(ihc[:200, :200]).save(d / "a.png")
    Image.fromarray(np.ascontiguousarray(ihc[20:180, 20:180][:, ::-1])).save(d / "a_copy.jpg")
    Image.fromarray(ihc[-200:, -200:]).save(d / "other.tif")
    return d


def test_compare_files_gives_score_and_evidence_in_either_order(files):
    copy = compare.compare_files(files / "a.png", files / "a_copy.jpg")
    other = compare.compare_files(files / "a.png", files / "other.tif")
    assert copy["derived"] and not other["derived"]
    assert copy["mirror"] and copy["inliers"] > other["inliers"]
    swapped = compare.compare_files(files / "a_copy.jpg", files / "a.png")
    assert swapped["score"] == copy["score"] and swapped["evidence"] == copy["evidence"]


def test_folder_is_a_call_of_find(files, tmp_path, capsys, monkeypatch):
    calls = []
    real = compare.find.find

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs, cache=False, show_progress=False)

    monkeypatch.setattr(compare.find, "find", spy)
    assert compare.main(["--folder", str(files), "--out", str(tmp_path)]) == 0
    assert len(calls) == 1 and (tmp_path / "report.html").exists()
    assert "a_copy.jpg" in capsys.readouterr().out


def test_clear_errors(files, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"")
    assert compare.main([str(tmp_path / "bad.png"), str(files / "a.png")]) == 2
    assert "bad.png" in capsys.readouterr().err
    assert compare.main([str(files / "a.png"), str(files / "a.png"), "--run", str(tmp_path)]) == 2
    assert "detector.pt" in capsys.readouterr().err
    path = detector.save(detector.default(), tmp_path / "d.pt")
    assert (
        compare.main([str(files / "a.png"), str(files / "a_copy.jpg"), "--detector", str(path)])
        == 0
    )
    assert "fused score" in capsys.readouterr().out
