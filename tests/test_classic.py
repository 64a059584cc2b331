"""Tests for bfutils.classic: hashes, keypoint matching, cosine scores and the CLIP plumbing."""

import json
import os
import time

import cv2
import numpy as np
import pytest
from skimage import data

from bfutils import classic

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never download


@pytest.fixture(scope="module")
def tissue() -> np.ndarray:
    """A textured 128 px crop of an immunohistochemistry image."""
    return np.ascontiguousarray(data.immunohistochemistry()[100:356, 200:456][::2, ::2])


@pytest.fixture(scope="module")
def other() -> np.ndarray:
    """An unrelated 128 px image (retina), never derived from ``tissue``."""
    img = data.retina()[700:956, 900:1156][::2, ::2]  # vessels: ~290 SIFT keypoints
    return np.ascontiguousarray(img)


def rotated(img: np.ndarray, angle: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def cropped(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img[10 : h - 20, 15 : w - 5], (w, h), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("method", classic.HASH_METHODS)
def test_hash_identical_image_scores_one(tissue, other, method):
    scores = classic.hash_scores([tissue, tissue], [tissue.copy(), other], method=method)
    assert scores[0] == 1.0
    assert 0.0 <= scores[1] < 1.0


def test_hash_accepts_grey_images_and_rejects_bad_input(tissue):
    grey = cv2.cvtColor(tissue, cv2.COLOR_RGB2GRAY)
    assert classic.hash_scores([grey], [grey])[0] == 1.0
    with pytest.raises(ValueError, match="method"):
        classic.hash_scores([grey], [grey], method="md5")
    with pytest.raises(ValueError, match=r"b\[0\].*float"):
        classic.hash_scores([grey], [grey.astype(float)])
    with pytest.raises(ValueError, match="a has 2 images but b has 1"):
        classic.hash_scores([grey, grey], [grey])


def test_keypoints_find_altered_copies_not_unrelated_images(tissue, other):
    copies = [rotated(tissue, 25), np.rot90(tissue).copy(), cropped(tissue), tissue[::-1].copy()]
    a = [tissue] * (len(copies) + 1)
    scores = classic.keypoint_scores(a, [*copies, other], progress=False)
    assert scores[-1] < 8
    assert (scores[:-1] >= 30).all() and (scores[:-1] >= 4 * max(scores[-1], 1)).all()


def test_keypoints_mirror_is_found_through_try_mirror(tissue):
    mirrored = [np.ascontiguousarray(tissue[:, ::-1])]
    details = classic.keypoint_details([tissue], mirrored, progress=False)
    assert bool(details.loc[0, "mirror_won"])
    best = details.loc[0, "inliers"]
    assert best >= 30 and details.loc[0, "inliers_direct"] < best / 5
    assert details.loc[0, "seconds"] > 0
    without = classic.keypoint_scores([tissue], mirrored, try_mirror=False, progress=False)
    assert without[0] < best / 5


def test_keypoints_blank_image_scores_zero(tissue):
    blank = np.zeros_like(tissue)
    details = classic.keypoint_details([blank, tissue], [blank, blank], progress=False)
    assert details["inliers"].tolist() == [0, 0]
    assert details["matches"].tolist() == [0, 0]
    assert classic.keypoint_details([], [], progress=False).columns.tolist() == (
        classic.DETAIL_COLUMNS
    )


def test_keypoints_orb_and_two_jobs_agree_with_one(tissue, other):
    a, b = [tissue, tissue], [rotated(tissue, 10), other]
    orb = classic.keypoint_scores(a, b, method="orb", progress=False)
    assert orb[0] > orb[1]
    one = classic.keypoint_scores(a, b, progress=False)
    assert np.array_equal(one, classic.keypoint_scores(a, b, n_jobs=2, progress=False))


def test_cosine_scores_symmetric_bounded_and_safe_for_zero_vectors():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    scores = classic.cosine_scores(x, y)
    assert np.allclose(scores, classic.cosine_scores(y, x))
    assert ((scores >= -1) & (scores <= 1)).all()
    assert np.allclose(classic.cosine_scores(x, 3 * x), 1.0)
    assert np.allclose(classic.cosine_scores(x, -x), -1.0)
    assert classic.cosine_scores(np.zeros((1, 8)), x[:1])[0] == 0.0
    with pytest.raises(ValueError, match="emb_a"):
        classic.cosine_scores(x, y[:, :4])


TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A registered, randomly initialised tiny open_clip architecture (plumbing only)."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip_cfg")
    (folder / "bfutils-tiny-test.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder)
    return "bfutils-tiny-test"


def test_clip_embed_gives_normalised_rows(tiny_clip, tissue, other):
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(tiny_clip, pretrained=None)
    grey = cv2.cvtColor(tissue, cv2.COLOR_RGB2GRAY)
    emb = classic.clip_embed(model.eval(), preprocess, [tissue, other, grey], batch_size=2)
    assert emb.shape == (3, 16) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    again = classic.clip_embed(model, preprocess, np.stack([tissue, other]), batch_size=8)
    assert np.allclose(again, emb[:2], atol=1e-5)  # batching does not change embeddings


def test_load_clip_reads_a_local_checkpoint(tiny_clip, tmp_path):
    import open_clip
    import torch

    model = open_clip.create_model(tiny_clip, pretrained=None)
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    loaded, preprocess = classic.load_clip(tiny_clip, pretrained=str(tmp_path / "tiny.pt"))
    assert not loaded.training
    assert torch.equal(loaded.visual.proj, model.visual.proj)  # the saved weights, not new ones
    assert callable(preprocess)


def test_load_clip_offline_raises_quickly(tmp_path):
    start = time.perf_counter()  # HF_HUB_OFFLINE=1 is set above
    with pytest.raises(classic.BaselineUnavailable, match="offline") as info:
        classic.load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 30  # huggingface_hub alone retries for ~50 s
    assert "laion2b_s34b_b79k" in info.value.reason


def test_load_clip_without_network_raises_quickly(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(classic, "_hub_reachable", lambda timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(classic.BaselineUnavailable, match="offline"):
        classic.load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 30


def test_load_clip_refuses_random_weights_and_unknown_names():
    with pytest.raises(classic.BaselineUnavailable, match="no pretrained"):
        classic.load_clip("ViT-B-32", pretrained=None)
    with pytest.raises(ValueError, match="not an open_clip model"):
        classic.load_clip("ViT-Z-99")
    with pytest.raises(ValueError, match="no file and no ViT-B-32 tag"):
        classic.load_clip("ViT-B-32", pretrained="/no/such/checkpoint.pt")
