"""Copy-detection retrieval: seeded queries with checkable ground truth, (Q, R) similarities."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from tests_helpers import synthetic

from bfutils import augment, classic, models, registry, retrieval, train

SIZE = 40  # images; the model's input_size is 32, so encoding resizes


def textured(n, size=SIZE, seed=0):
    """Smooth random textures (upsampled 8x8 noise plus fine noise), uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, 3, 8, 8), dtype=np.float32))
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic").permute(0, 2, 3, 1).numpy()
    fine = rng.normal(scale=0.05, size=smooth.shape)
    return np.clip((smooth + fine) * 255, 0, 255).astype(np.uint8)


def save_tiny(path, schedule="joint", pretrained=None):
    """A tiny resnet18 model; ``pretrained`` only labels the config (load_model never fetches)."""
    torch.manual_seed(0)
    model = models.build_model(encoder="resnet18", projector_widths=(32, 32, 16), head_hidden=16)
    cfg = train.TrainConfig(
        encoder="resnet18", pretrained=pretrained, input_size=32,
        projector_widths=(32, 32, 16), head_hidden=16, schedule=schedule,
    )  # fmt: skip
    train.save_model(model, cfg, path)
    return path


@pytest.fixture(scope="module")
def data():
    manifest, _ = synthetic(n_groups=8, per_group=6)
    manifest["split"] = np.where(manifest.index < 24, "test", "train")
    return manifest, textured(len(manifest))


@pytest.fixture(scope="module")
def build(data):
    return retrieval.build_queries(*data, seed=1)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("run") / "model_joint.pt")


def _float(images):
    """The pixels encode_images feeds the encoder: [0, 1], bilinear antialiased to 32 px."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True)


def test_build_queries_is_seeded_and_sized(data, build):
    again = retrieval.build_queries(*data, seed=1)
    assert np.array_equal(again["queries"], build["queries"])
    pd.testing.assert_frame_equal(again["table"], build["table"])
    other = retrieval.build_queries(*data, seed=2)
    assert not other["table"]["alteration"].equals(build["table"]["alteration"])
    gt, n_ref = build["gt"], len(build["references"])
    assert n_ref == 16 and (gt >= 0).sum() == 8 and (gt == -1).sum() == 8  # 24 test images
    assert build["queries"].shape == (16, SIZE, SIZE, 3) and build["queries"].dtype == np.uint8
    assert len(set(gt[gt >= 0])) == 8  # one query per chosen reference
    assert list(build["table"].columns) == [
        "query_id", "source_image_id", "gt_reference_id", "family", "alteration"
    ]  # fmt: skip


def test_references_are_unaltered_test_images(data, build):
    manifest, images = data
    rows = build["reference_rows"]
    assert (manifest["split"].to_numpy()[rows] == "test").all()
    assert np.array_equal(build["references"], images[rows])
    assert list(build["reference_ids"]) == list(manifest["image_id"].to_numpy()[rows])


def test_ground_truth_reapplies_the_recorded_alteration(data, build):
    manifest, images = data
    by_id = dict(zip(manifest["image_id"], range(len(manifest)), strict=True))
    refs, table = set(build["reference_ids"]), build["table"]
    for q, row in table.iterrows():
        alt = augment.Alteration.from_json(row["alteration"])
        assert alt.family == row["family"]
        source = images[by_id[row["source_image_id"]]]
        assert np.array_equal(augment.apply(source, alt), build["queries"][q])
        g = build["gt"][q]
        if g >= 0:
            assert row["gt_reference_id"] == row["source_image_id"] == build["reference_ids"][g]
            assert np.array_equal(augment.apply(build["references"][g], alt), build["queries"][q])
        else:  # a distractor source is never a reference
            assert row["gt_reference_id"] == "" and row["source_image_id"] not in refs


def test_build_queries_rejects_bad_input(data):
    manifest, images = data
    with pytest.raises(ValueError, match="split='tset'"):
        retrieval.build_queries(manifest, images, split="tset")
    with pytest.raises(ValueError, match="ref_share"):
        retrieval.build_queries(manifest, images, ref_share=1.0)
    with pytest.raises(ValueError, match="rows but images"):
        retrieval.build_queries(manifest, images[:5])


def test_pair_model_matrix_equals_model_score(build, model_path):
    sim = retrieval.similarity("pair_model", build, model_path=model_path, progress=False)
    assert sim.shape == (16, 16) and ((sim > 0) & (sim < 1)).all()
    model, _ = train.load_model(model_path)
    qi, ri = np.array([0, 3, 7, 15, 15]), np.array([0, 5, 15, 2, 11])
    expected = model.score(_float(build["queries"][qi]), _float(build["references"][ri]))
    np.testing.assert_allclose(sim[qi, ri], expected.numpy(), rtol=1e-4, atol=1e-5)


def test_cosine_methods_match_rowwise_cosine(build, model_path):
    model, _ = train.load_model(model_path)
    with torch.no_grad():
        fq = model.features(_float(build["queries"]))
        fr = model.features(_float(build["references"]))
        zq, zr = model.projector(fq), model.projector(fr)
    qi, ri = np.array([1, 4, 14]), np.array([2, 4, 0])
    for method, (a, b) in {"cosine_encoder": (fq, fr), "cosine_embedding": (zq, zr)}.items():
        sim = retrieval.similarity(method, build, model_path=model_path, progress=False)
        assert sim.shape == (16, 16)
        want = classic.cosine_scores(a[qi].numpy(), b[ri].numpy())
        np.testing.assert_allclose(sim[qi, ri], want, atol=1e-4)


def test_phash_matrix_equals_hash_scores(build):
    sim = retrieval.similarity("phash", build, progress=False)
    assert sim.shape == (16, 16)
    qi, ri = np.arange(16), (3 * np.arange(16)) % 16
    want = classic.hash_scores(build["queries"][qi], build["references"][ri], method="phash")
    np.testing.assert_array_equal(sim[qi, ri], want)
    exact = {**build, "queries": build["references"]}  # unaltered copies hash the same
    assert (np.diag(retrieval.similarity("phash", exact, progress=False)) == 1).all()


def test_similarity_rejects_bad_input(build, tmp_path):
    with pytest.raises(ValueError, match="method='sift'"):
        retrieval.similarity("sift", build)
    with pytest.raises(ValueError, match="model_path is required"):
        retrieval.similarity("pair_model", build)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        retrieval.similarity("pair_model", build, model_path=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="build lacks"):
        retrieval.similarity("phash", {"queries": build["queries"]})


def test_evaluate_all_one_row_per_model(build, tmp_path):
    save_tiny(tmp_path / "model_joint.pt")
    save_tiny(tmp_path / "model_barlow_twins.pt", schedule="barlow_twins", pretrained="timm")
    table = retrieval.evaluate_all(build, tmp_path, progress=False)
    assert list(table.columns) == retrieval.RESULT_COLUMNS
    assert list(table["model"]) == ["barlow_twins", "joint", "imagenet_cnn", "phash"]
    assert list(table["method"]) == ["cosine_embedding", "pair_model", "cosine_encoder", "phash"]
    assert (table[["n_queries", "n_references", "n_distractors"]] == [16, 16, 8]).all().all()
    scores = table[["top1", "top5", "top10", "micro_ap"]]
    assert scores.notna().all().all() and scores.apply(lambda c: c.between(0, 1)).all().all()
    assert (table["top1"] <= table["top5"]).all() and (table["top5"] <= table["top10"]).all()


def test_every_schedule_has_a_retrieval_method():
    methods = {s: retrieval.SCORING_METHOD[registry.scoring(s)] for s in registry.SCHEDULES}
    assert set(methods.values()) <= set(retrieval.MODEL_METHODS)
    assert methods["bce_only"] == "pair_model" and methods["simclr"] == "cosine_embedding"


def test_evaluate_all_skips_imagenet_cnn_without_a_pretrained_encoder(build, tmp_path):
    save_tiny(tmp_path / "model_joint.pt")
    table = retrieval.evaluate_all(build, tmp_path, progress=False)
    assert list(table["model"]) == ["joint", "phash"]
    with pytest.raises(FileNotFoundError, match="run_dir"):
        retrieval.evaluate_all(build, tmp_path / "missing", progress=False)


def test_verified_similarity_rescores_only_the_short_list(build, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bfutils import baselines

    save_tiny(tmp_path / "model_joint.pt")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, len(baselines.FUSE_COLUMNS)))
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, (x[:, 1] > 0).astype(int))
    baselines.save_fused(pipe, fuse_with="joint", path=tmp_path / "fused_model.json")
    plain = retrieval.similarity("pair_model", build, model_path=tmp_path / "model_joint.pt")
    sim, seconds = retrieval.verified_similarity(build, tmp_path, k=3)
    assert sim.shape == plain.shape and seconds >= 0
    verified = sim >= 0
    assert (verified.sum(axis=1) == 3).all()  # exactly the top 3 of each query re-scored
    top3 = np.argsort(-plain, axis=1, kind="stable")[:, :3]
    assert all(set(np.flatnonzero(verified[q])) == set(top3[q]) for q in range(len(sim)))
    assert np.allclose(sim[~verified], plain[~verified] - 2.0)
    table = retrieval.evaluate_all(build, tmp_path, progress=False)
    assert "fused" in set(table["model"])
