"""The detector of a run scores a user's own files, with its evidence."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data as skdata
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bfutils import baselines, compare, models, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny run folder: a random pair model, a fused model, validation predictions."""
    d = tmp_path_factory.mktemp("run")
    cfg = train.TrainConfig(encoder="resnet18", pretrained=None, input_size=32,
                            projector_widths=(32, 32, 16), head_hidden=16)  # fmt: skip
    model = models.build_model(encoder="resnet18", projector_widths=(32, 32, 16), head_hidden=16)
    train.save_model(model, cfg, d / "model_joint.pt")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, len(baselines.FUSE_COLUMNS)))
    y = (x[:, 1] > 0).astype(int)  # the fake fused model trusts keypoint inliers
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    baselines.save_fused(pipe, fuse_with="joint", path=d / "fused_model.joblib")
    pd.DataFrame({"pair_id": range(6), "split": ["val"] * 3 + ["test"] * 3,
                  "label": [1, 0, 1, 0, 1, 0], "score": [0.9, 0.2, 0.8, 0.1, 0.7, 0.3],
                  "family": "", "negative_kind": "", "hard_detail": ""}).to_csv(
        d / "predictions_fused.csv", index=False)  # fmt: skip
    (d / "params_01_prepare_data.json").write_text(json.dumps({"params": {"image_size": 96}}))
    return d


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("panels")
    ihc = skdata.immunohistochemistry()
    Image.fromarray(ihc[:200, :200]).save(d / "a.png")
    Image.fromarray(np.ascontiguousarray(ihc[20:180, 20:180][:, ::-1])).save(d / "a_copy.jpg")
    Image.fromarray(ihc[-200:, -200:]).save(d / "other.tif")
    return d


def test_detector_reads_threshold_and_size_from_the_run(run_dir):
    det = compare.load_detector(run_dir)
    assert det.fuse_with == "joint" and det.image_size == 96
    assert 0.2 < det.threshold < 0.9


def test_compare_files_gives_score_and_evidence(run_dir, files):
    det = compare.load_detector(run_dir)
    copy = compare.compare_files(files / "a.png", files / "a_copy.jpg", det)
    other = compare.compare_files(files / "a.png", files / "other.tif", det)
    for r in (copy, other):
        assert 0 <= r["score"] <= 1 and isinstance(bool(r["derived"]), bool)
    assert copy["inliers"] > other["inliers"] and copy["mirror_won"]
    assert copy["score"] > other["score"]
    swapped = compare.compare_files(files / "a_copy.jpg", files / "a.png", det)
    assert swapped["pair_score"] == copy["pair_score"]  # the pair model is order-invariant


def test_screen_folder_ranks_every_pair(run_dir, files):
    table = compare.screen_folder(files, compare.load_detector(run_dir))
    assert len(table) == 3 and table["score"].is_monotonic_decreasing
    top = {table.loc[0, "image_a"].split("/")[-1], table.loc[0, "image_b"].split("/")[-1]}
    assert top == {"a.png", "a_copy.jpg"}


def test_clear_errors(run_dir, files, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="notebook 04"):
        compare.load_detector(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"")
    code = compare.main([str(tmp_path / "bad.png"), str(files / "a.png"), "--run", str(run_dir)])
    assert code == 2 and "bad.png" in capsys.readouterr().err
    assert (
        compare.main([str(files / "a.png"), str(files / "a_copy.jpg"), "--run", str(run_dir)]) == 0
    )
    assert "fused score" in capsys.readouterr().out
