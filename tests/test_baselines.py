"""Baselines score the same pairs; fused is fitted on validation pairs only."""

import numpy as np
import pandas as pd
import pytest

from bfutils import baselines, classic


def _pairs(n, split, rng):
    label = (np.arange(n) % 5 < 2).astype(int)
    return pd.DataFrame({
        "pair_id": [f"{split}-{k:04d}" for k in range(n)], "split": split, "label": label,
        "family": np.where(label == 1, "hflip", ""),
        "negative_kind": np.where(label == 1, "", np.where(np.arange(n) % 2, "hard", "easy")),
        "hard_detail": "",
    })  # fmt: skip


@pytest.fixture()
def evidence():
    rng = np.random.default_rng(0)
    preds, details = [], []
    for split, n in (("val", 200), ("test", 300)):
        t = _pairs(n, split, rng)
        score = np.clip(0.5 + 0.3 * (t["label"] - 0.5) + rng.normal(0, 0.2, n), 0.01, 0.99)
        inl = rng.poisson(np.where(t["label"] == 1, 30, 5))
        preds.append(t.assign(score=score, model="joint"))
        d = {c: rng.normal(0, 1, n) for c in baselines.VERIFY_COLUMNS}
        d |= {"evidence": inl / 2.0, "log_inliers": np.log1p(inl)}
        details.append(pd.DataFrame({"pair_id": t["pair_id"], **d}))
    return pd.concat(preds, ignore_index=True), pd.concat(details, ignore_index=True)


def test_fused_beats_each_input_and_ignores_test_labels(evidence):
    pred, details = evidence
    out, coef, pipe = baselines.fused(pred, details, seed=0)
    # degree 2: every input, its square and each product of two, and the intercept
    n = len(baselines.FUSE_COLUMNS)
    assert set(baselines.FUSE_COLUMNS) | {"pair_logit^2", "evidence thumb_sim"} <= set(coef)
    assert len(coef) == n + n * (n + 1) // 2 + 1
    flipped = pred.copy()
    test = flipped["split"] == "test"
    flipped.loc[test, "label"] = 1 - flipped.loc[test, "label"]  # test labels must not matter
    out2, _, _ = baselines.fused(flipped, details, seed=0)
    t1, t2 = out[out["split"] == "test"], out2[out2["split"] == "test"]
    assert np.allclose(t1["score"].to_numpy(), t2["score"].to_numpy())
    from sklearn.metrics import roc_auc_score

    y = t1["label"]
    auc_fused = roc_auc_score(y, t1["score"])
    auc_pair = roc_auc_score(y, pred.loc[test, "score"])
    assert auc_fused > auc_pair
    t = pred[test]
    again = baselines.fused_scores(pipe, t["score"].to_numpy(), details[test.to_numpy()])
    assert np.allclose(again, t1["score"].to_numpy())


def test_fused_validation_scores_are_cross_fitted(evidence):
    pred, details = evidence
    out, _, _ = baselines.fused(pred, details, seed=0)
    val = out[out["split"] == "val"]
    assert len(val) == 200 and val["score"].between(0, 1).all()
    out_seed, _, _ = baselines.fused(pred, details, seed=1)  # other folds, other val scores
    assert not np.allclose(val["score"], out_seed[out_seed["split"] == "val"]["score"])


def test_fused_refuses_missing_or_old_evidence(evidence):
    pred, details = evidence
    with pytest.raises(ValueError, match="verification details are missing"):
        baselines.fused(pred, details.iloc[:-5], seed=0)
    old = pd.DataFrame({"pair_id": details["pair_id"], "inliers": 3, "matches": 5,
                        "keypoints_a": 100})  # fmt: skip  # keypoint_details.csv of an older run
    with pytest.raises(ValueError, match="re-run notebook 04"):
        baselines.fused(pred, old, seed=0)


def test_fused_model_is_saved_as_json_and_scores_the_same(evidence, tmp_path):
    import json

    pred, details = evidence
    out, _, pipe = baselines.fused(pred, details, seed=0)
    path = tmp_path / "fused_model.json"
    baselines.save_fused(pipe, fuse_with="joint", path=path)
    assert json.loads(path.read_text())["columns"] == baselines.FUSE_COLUMNS  # plain JSON
    model, fuse_with = baselines.load_fused(path)
    test = (pred["split"] == "test").to_numpy()
    again = baselines.fused_scores(model, pred.loc[test, "score"].to_numpy(), details[test])
    assert fuse_with == "joint"
    assert np.allclose(again, out[out["split"] == "test"]["score"].to_numpy())
    spec = json.loads(path.read_text())
    path.write_text(json.dumps(spec | {"detector": "sscd-000000000000"}))
    with pytest.raises(ValueError, match="fitted on the features of detector"):
        baselines.load_fused(path)  # the shipped detector was recalibrated since
    path.write_text(json.dumps(spec | {"powers": spec["powers"][:-1]}))
    with pytest.raises(ValueError, match="not a fused model file.*do not fit"):
        baselines.load_fused(path)
    path.write_bytes(b"\x80\x04 not json")  # e.g. an older run's joblib pickle
    with pytest.raises(ValueError, match="not a fused model file"):
        baselines.load_fused(path)


def test_compare_degrees_scores_each_degree_as_fused_does(evidence):
    from sklearn.metrics import roc_auc_score

    pred, details = evidence
    table = baselines.compare_degrees(pred, details, degrees=(1, 2))
    assert table["degree"].tolist() == [1, 2]
    out = baselines.fused(pred, details, seed=0, degree=1)[0]
    for split in ("val", "test"):
        g = out[out["split"] == split]
        assert table.loc[0, f"{split}_roc_auc"] == pytest.approx(
            roc_auc_score(g["label"], g["score"])
        )


def test_a_linear_fused_model_file_still_loads(evidence, tmp_path):
    """Files of runs before the degree-2 model (no ``powers``) score as they did."""
    pred, details = evidence
    out, coef, pipe = baselines.fused(pred, details, seed=0, degree=1)
    assert set(coef) == set(baselines.FUSE_COLUMNS) | {"intercept"}
    baselines.save_fused(pipe, fuse_with="joint", path=tmp_path / "f.json")
    model, _ = baselines.load_fused(tmp_path / "f.json")
    test = (pred["split"] == "test").to_numpy()
    again = baselines.fused_scores(model, pred.loc[test, "score"].to_numpy(), details[test])
    assert model.powers is None
    assert np.allclose(again, out[out["split"] == "test"]["score"].to_numpy())


def test_verify_details_are_symmetric_and_find_a_copy():
    from skimage import data

    tissue = np.ascontiguousarray(data.immunohistochemistry()[:200, :200])
    other = np.ascontiguousarray(data.immunohistochemistry()[300:500, 300:500])
    copy = np.ascontiguousarray(np.rot90(tissue)[20:180, 10:190])
    a, b = [tissue, tissue, other], [copy, other, copy]
    there = baselines.verify_details(a, b)
    back = baselines.verify_details(b, a)
    assert list(there.columns[: len(baselines.VERIFY_COLUMNS)]) == baselines.VERIFY_COLUMNS
    cols = baselines.VERIFY_COLUMNS
    assert np.allclose(there[cols].to_numpy(), back[cols].to_numpy())
    assert there["evidence"][0] > 5 and there["evidence"][1] == 0 and there["evidence"][2] == 0
    with pytest.raises(ValueError, match="3 images a but 2"):
        baselines.verify_details(a, b[:2])


def test_hashes_and_keypoints_score_every_pair():
    from skimage import data

    img = data.immunohistochemistry()[:128, :128]
    other = data.immunohistochemistry()[-128:, -128:]
    t = _pairs(4, "val", None).assign(label=[1, 1, 0, 0])
    a = np.stack([img, img, img, img])
    b = np.stack([img, img[:, ::-1], other, other[::-1]])
    sets = {"val": (t, a, b), "test": (t.assign(split="test"), a, b)}
    h = baselines.hashes(sets, method="phash")
    assert len(h) == 8 and h.loc[0, "score"] == 1.0
    kp, details = baselines.keypoints(sets, n_jobs=1)
    s = kp["score"].to_numpy()[:4]
    assert min(s[:2]) > max(s[2:])
    assert list(details["pair_id"][:4]) == list(t["pair_id"])


def test_clip_without_weights_is_not_run(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(classic.BaselineUnavailable):
        baselines.clip({}, model_name="ViT-B-32", pretrained="laion2b_s34b_b79k")


def test_learned_trains_on_validation_roc_auc_and_saves_its_schedule(tmp_path):
    from tests_helpers import synthetic

    from bfutils import pairs, train

    m, images = synthetic(n_groups=10, per_group=4, size=32)
    m["split"] = pairs.assign_splits(m, seed=0)
    ev = {s: pairs.make_pairs(m, images, split=s, n_pairs=20, seed=0, progress=False)
          for s in ("val", "test")}  # fmt: skip
    cfg = train.TrainConfig(
        schedule="joint", encoder="resnet18", pretrained=None, input_size=32,
        projector_widths=(16, 16, 8), head_hidden=8, epochs=2, steps_per_epoch=1, batch_size=8,
        cache_views=2, device="cpu",
    )  # fmt: skip
    preds, hist, _ = baselines.learned("simclr", cfg, m, images, ev, save_to=tmp_path / "m.pt")
    assert set(preds["model"]) == {"simclr"} and len(preds) == 40
    assert list(hist["epoch"]) == [0, 1] and hist["val_roc_auc"].between(0, 1).all()
    assert train.load_model(tmp_path / "m.pt")[1].schedule == "simclr"
    with pytest.raises(ValueError, match="schedule must be one of"):
        baselines.learned("joint", cfg, m, images, ev)
