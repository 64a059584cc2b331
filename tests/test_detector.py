"""The detector file: self-describing, loads without pickle, scores symmetrically."""

import numpy as np
import pytest
import torch

from bfutils import detector


def test_default_detector_is_small_and_self_describing():
    assert detector.DEFAULT_PATH.stat().st_size < 1_000_000
    det = detector.default()
    assert det.encoder == "efficientnet_lite0" and det.weights == "lite0-offline"
    assert {"size", "fit", "mean", "std", "views", "regions", "copy"} <= set(det.preprocess)
    assert list(det.features) and len(det.fused["coef"]) == len(det.features)
    assert 0 < det.threshold < 1 and det.provenance["command"].startswith("python -m")
    # the default describes panels by copy descriptor and keypoints: no encoder pass, and no
    # fused feature that would need one
    assert not det.uses_encoder and len(det.descriptor_mean) == 0
    assert not set(det.features) & {"cos_global", "cos_region", "cos_margin"}


def test_a_detector_without_views_never_runs_the_encoder(monkeypatch):
    from bfutils import descriptors

    det = detector.default()

    def refuse(self):
        raise AssertionError("the encoder was built")

    monkeypatch.setattr(detector.Detector, "encoder_and_norm", refuse)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (90, 120, 3), dtype=np.uint8) for _ in range(2)]
    ra, rb = descriptors.compute(images, det)
    assert ra["global"].size == 0 and ra["copy"].shape == (512,) and len(ra["points"])
    feats = detector.pair_features(ra, rb, {"inliers": 0, "matches": 0, "evidence": 0.0}, det)
    assert feats["cos_global"] == feats["cos_region"] == 0.0
    assert detector.pair_score(feats, det) == feats["cos_copy"] != 0.0


def test_detector_file_loads_with_weights_only(tmp_path):
    det = detector.default()
    path = detector.save(det, tmp_path / "d.pt")
    raw = torch.load(path, weights_only=True)  # no pickle: plain types and tensors only
    assert raw["format"] == detector.FORMAT
    again = detector.load(path)
    assert again.fused == det.fused and again.threshold == det.threshold
    assert np.array_equal(again.descriptor_mean, det.descriptor_mean)
    assert again.cache_key() == det.cache_key()


def test_detector_with_own_weights_round_trips(tmp_path):
    state = {"w": torch.arange(4.0)}
    det = detector.Detector(weights=state, preprocess={"size": 32}, descriptor_mean=[0.0])
    back = detector.load(detector.save(det, tmp_path / "own.pt"))
    assert torch.equal(back.weights["w"], state["w"])
    assert back.cache_key() == det.cache_key() != detector.default().cache_key()


def test_bad_detector_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        detector.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable detector"):
        detector.load(tmp_path / "junk.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a bfutils-detector"):
        detector.load(tmp_path / "other.pt")


def _record(rng, views, regions=13, dim=1280):
    return {"global": rng.normal(size=(views, dim)).astype(np.float16),
            "regional": rng.normal(size=(regions, dim)).astype(np.float16),
            "copy": rng.normal(size=512).astype(np.float16)}  # fmt: skip


@pytest.mark.parametrize("views", [[], ["identity"], ["identity", "hflip", "rot90", "rot180"]])
def test_pair_features_and_score_are_symmetric(views):
    det = detector.default()
    det.preprocess = det.preprocess | {"views": views}
    det.descriptor_mean = np.zeros(1280, np.float32)
    rng = np.random.default_rng(0)
    evidence = {"inliers": 9, "matches": 20, "evidence": 4.2}
    for _ in range(5):
        ra, rb = _record(rng, len(views)), _record(rng, len(views))
        fab = detector.pair_features(ra, rb, evidence, det)
        fba = detector.pair_features(rb, ra, evidence, det)
        assert fab == fba
        sab = det.score({n: [fab[n]] for n in det.features})
        sba = det.score({n: [fba[n]] for n in det.features})
        assert sab[0] == sba[0]


def test_view_mask_pairs_query_views_with_indexed_views():
    m = detector.view_mask(["identity", "hflip", "rot90"])
    assert (m == m.T).all()
    assert m[2, 0] and m[2, 1] and not m[2, 2]  # rot90 is a query view only


def test_rival_margins_match_a_naive_loop_and_are_symmetric():
    import pandas as pd

    rng = np.random.default_rng(0)
    names = np.array(list("abcdefg"))
    pairs = {tuple(sorted(rng.choice(names, 2, replace=False))) for _ in range(15)}
    table = pd.DataFrame(sorted(pairs), columns=["a", "b"])
    table["inlier_ratio"] = rng.random(len(table))
    got = detector.rival_margins(table)
    for i, row in table.iterrows():
        others = table[(table.index != i) & (table["a"].isin([row.a, row.b])
                                             | table["b"].isin([row.a, row.b]))]  # fmt: skip
        best = others["inlier_ratio"].max() if len(others) else 0.0
        assert got[i] == pytest.approx(row.inlier_ratio - best)
    swapped = table.rename(columns={"a": "b", "b": "a"})
    assert np.array_equal(detector.rival_margins(swapped), got)
    alone = table.iloc[:1]  # one pair alone: the margin is its ratio
    assert detector.rival_margins(alone)[0] == alone["inlier_ratio"].iloc[0]


def test_fused_model_never_scores_lower_for_more_evidence():
    from sklearn.linear_model import LogisticRegression

    from bfutils.calibrate import monotone_logistic

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    signal = y + rng.normal(0, 0.7, 400)
    # two correlated copies of one signal and a noise column: an unconstrained fit may weight
    # one copy negatively; the monotone fit keeps every coefficient >= 0
    x = np.column_stack([signal, signal + rng.normal(0, 0.05, 400), rng.normal(0, 1, 400)])
    coef, intercept = monotone_logistic(x, y)
    assert (coef >= 0).all() and coef[:2].sum() > 1
    # where the unconstrained optimum is already non-negative, both fits agree
    x1 = x[:, :1]
    lr = LogisticRegression(C=1.0).fit(x1, y)
    c1, b1 = monotone_logistic(x1, y)
    assert np.allclose(c1, lr.coef_[0], atol=1e-3) and abs(b1 - lr.intercept_[0]) < 1e-3


def test_a_pair_alone_is_set_against_the_typical_rival():
    import pandas as pd

    det = detector.default()
    # stored by bfutils.calibrate for every margin it had (the template check's came later)
    assert set(detector.MARGINS) - {"tm_margin"} <= set(det.fused["rival"])
    feats = {
        "inlier_ratio": 0.5,
        "cos_copy": 0.3,
        "phash_sim": 0.6,
        "pair_score": 0.3,
        "thumb_sim": 0.4,
        "xf_log_inliers": 1.2,
        "tm_sim": 0.0,
        "al_sim": 0.7,
    }
    alone = pd.DataFrame([{"a": "x", "b": "y", **feats}])  # one pair: no rivals
    for margin, value in detector.MARGINS.items():
        if margin not in det.fused["rival"]:
            assert margin not in det.features
            continue
        got = detector.rival_margins(alone, value, default=detector.typical_rival(det, margin))
        assert got[0] == pytest.approx(feats[value] - det.fused["rival"][margin])
    assert np.isnan(detector.rivals(alone, "inlier_ratio")).all()
    old = detector.Detector(fused={"coef": []})  # calibrated before typical rivals were stored
    assert all(detector.typical_rival(old, m) == 0.0 for m in detector.MARGINS)


def test_rival_margins_fall_back_to_the_default_without_rivals():
    import pandas as pd

    table = pd.DataFrame({"a": ["x", "x", "p"], "b": ["y", "z", "q"], "v": [0.9, 0.4, 0.7]})
    out = detector.rival_margins(table, "v", default=0.5)
    assert out == pytest.approx([0.5, -0.5, 0.2])  # p-q has no rival: 0.7 - 0.5
