"""Tests for bfutils.augment: every family alters, keeps shape, and re-applies identically."""

import json
import warnings

import numpy as np
import pytest
import torch

from bfutils import augment as A

SEEDS = range(6)
PARAMETRISED = [f for f in A.FAMILIES if A.RANGES[f]]  # families with parameters to draw


def textured(h: int = 48, w: int = 64, seed: int = 0, low: int = 0) -> np.ndarray:
    """Colourful image with structure at several scales, so every family leaves a trace."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) % 32 * 8], axis=-1)
    noisy = base + rng.normal(0, 25, size=base.shape)
    return np.clip(noisy, low, 255).astype(np.uint8)


def test_families_contract():
    assert len(A.FAMILIES) == 13
    assert A.FAMILIES[-1] == "compose"
    assert len(set(A.FAMILIES)) == 13
    assert set(A.RANGES) == set(A.FAMILIES)


@pytest.mark.parametrize("family", A.FAMILIES)
@pytest.mark.parametrize("shape", [(48, 64), (40, 40)])
def test_every_family_keeps_shape_dtype_and_changes_image(family, shape):
    image = textured(*shape)
    before = image.copy()
    for seed in SEEDS:
        alt = A.sample(family, np.random.default_rng(seed))
        out = A.apply(image, alt)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert out.flags.c_contiguous
        diff = np.abs(out.astype(int) - image.astype(int)).mean()
        assert diff > 0.5, f"{A.describe(alt)} left the image (almost) unchanged: {diff}"
    np.testing.assert_array_equal(image, before)  # input not modified


@pytest.mark.parametrize("family", A.FAMILIES)
def test_json_round_trip_reapplies_identically(family):
    image = textured()
    for seed in SEEDS:
        alt = A.sample(family, np.random.default_rng(seed))
        text = alt.to_json()
        assert json.loads(text)["family"] == family
        again = A.Alteration.from_json(text)
        assert again == alt and hash(again) == hash(alt)
        np.testing.assert_array_equal(A.apply(image, again), A.apply(image, alt))


def test_apply_ignores_global_random_state():
    image = textured()
    parts = {"n_steps": (3,), "families": ("gaussian_noise", "affine", "jpeg")}
    alt = A.sample("compose", np.random.default_rng(3), ranges={"compose": parts})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        np.random.seed(0)
        first = A.apply(image, alt)
        torch.manual_seed(1)
        np.random.seed(1)
        second = A.apply(image, alt)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("family", A.FAMILIES)
def test_same_seed_same_params(family):
    draws = [A.sample(family, np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    if family in PARAMETRISED:
        others = {A.sample(family, np.random.default_rng(s)).to_json() for s in range(10)}
        assert len(others) > 1


def test_flips_and_half_turn_are_involutions():
    image = textured()
    for family, params in [("hflip", {}), ("vflip", {}), ("rotate90", {"k": 2})]:
        alt = A.Alteration(family=family, params=params)
        once = A.apply(image, alt)
        assert not np.array_equal(once, image)
        np.testing.assert_array_equal(A.apply(once, alt), image)


def test_geometric_families_match_numpy():
    image = textured(40, 40)
    np.testing.assert_array_equal(A.apply(image, A.Alteration("hflip", {})), image[:, ::-1])
    np.testing.assert_array_equal(A.apply(image, A.Alteration("vflip", {})), image[::-1])
    for k in (1, 2, 3):
        out = A.apply(image, A.Alteration("rotate90", {"k": k}))
        np.testing.assert_array_equal(out, np.rot90(image, k=k))


def test_pixel_families_do_what_they_say():
    image = textured()
    gray = A.apply(image, A.Alteration("grayscale", {}))
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    noisy = A.apply(flat, A.Alteration("gaussian_noise", {"sigma": 0.05, "seed": 1}))
    assert noisy.std() == pytest.approx(0.05 * 255, rel=0.05)
    blurred = A.apply(image, A.Alteration("gaussian_blur", {"sigma": 2.0}))
    assert np.diff(blurred.astype(int), axis=1).std() < np.diff(image.astype(int), axis=1).std()
    darker = A.apply(
        image, A.Alteration("intensity", {"brightness": 0.7, "contrast": 1.0, "gamma": 1.0})
    )
    assert darker.mean() < image.mean() - 10


def test_crop_resize_zooms_in_on_the_recorded_box():
    image = textured(64, 64)
    alt = A.Alteration("crop_resize", {"area": 0.5625, "aspect": 1.0, "x": 0.0, "y": 0.0})
    out = A.apply(image, alt)  # top-left 48x48 box scaled up by 4/3
    assert out[0, 0].tolist() == pytest.approx(image[0, 0].tolist(), abs=40)
    assert abs(out.astype(int)[:, :, 0].mean() - image[:48, :48, 0].mean()) < 3


@pytest.mark.parametrize("family", ["rotate_small", "affine"])
def test_fill_modes(family):
    image = textured(40, 72, low=60)  # no dark pixels, so black fill is detectable
    for fill, expect_black in [("reflect", False), ("black", True)]:
        for seed in SEEDS:
            ranges = {family: {"fill": (fill,)}}
            alt = A.sample(family, np.random.default_rng(seed), strength="strong", ranges=ranges)
            out = A.apply(image, alt)
            has_black = bool((out.max(axis=-1) < 30).any())
            assert has_black == expect_black, A.describe(alt)


def test_compose_records_two_or_three_distinct_parts():
    image = textured()
    sizes = set()
    for seed in range(40):
        alt = A.sample("compose", np.random.default_rng(seed))
        parts = [s.family for s in alt.steps]
        sizes.add(len(parts))
        assert len(set(parts)) == len(parts) and "compose" not in parts
        assert not {"hflip", "vflip", "rotate90"} <= set(parts)  # could be the identity
        assert A.describe(alt) == "compose(" + "+".join(parts) + ")"
        manual = image
        for step in alt.steps:
            manual = A.apply(manual, step)
        np.testing.assert_array_equal(A.apply(image, alt), manual)
    assert sizes == {2, 3}


def test_strength_and_range_overrides():
    mild = [A.sample("jpeg", np.random.default_rng(s), strength="mild") for s in range(20)]
    strong = [A.sample("jpeg", np.random.default_rng(s), strength="strong") for s in range(20)]
    assert min(a.params["quality"] for a in mild) >= 47
    assert max(a.params["quality"] for a in strong) <= 48
    fixed = A.sample("jpeg", np.random.default_rng(0), ranges={"jpeg": {"quality": (40, 40)}})
    assert fixed.params == {"quality": 40}
    only = {"compose": {"families": ("hflip", "jpeg"), "n_steps": (2,)}}
    parts = {s.family for s in A.sample("compose", np.random.default_rng(0), ranges=only).steps}
    assert parts == {"hflip", "jpeg"}
    crops = [A.sample("crop_resize", np.random.default_rng(s), strength="strong") for s in SEEDS]
    assert max(c.params["area"] for c in crops) <= 0.7


def test_random_alteration_and_view_pair():
    rng = np.random.default_rng(0)
    seen = {A.random_alteration(rng).family for _ in range(200)}
    assert seen == set(A.FAMILIES)
    assert A.random_alteration(rng, ["jpeg"]).family == "jpeg"
    image = textured()
    img1, img2, alt1, alt2 = A.view_pair(image, np.random.default_rng(1))
    assert img1.shape == img2.shape == image.shape
    np.testing.assert_array_equal(img1, A.apply(image, alt1))
    np.testing.assert_array_equal(img2, A.apply(image, alt2))
    # Independent draws: equal only by chance (e.g. both the parameter-free grayscale).
    pairs = [A.view_pair(image, np.random.default_rng(s))[2:] for s in range(10)]
    assert sum(a1 != a2 for a1, a2 in pairs) >= 8


def test_apply_batch():
    images = np.stack([textured(seed=s) for s in range(3)])
    alts = [A.sample(f, np.random.default_rng(0)) for f in ("hflip", "jpeg", "compose")]
    out = A.apply_batch(images, alts)
    assert out.shape == images.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], A.apply(images[1], alts[1]))
    with pytest.raises(ValueError, match="3 images but 2 alterations"):
        A.apply_batch(images, alts[:2])
    with pytest.raises(ValueError, match="NxHxWx3"):
        A.apply_batch(images[0], alts)


def test_describe():
    assert A.describe(A.Alteration("hflip", {})) == "hflip"
    label = A.describe(A.Alteration("rotate_small", {"angle": 12.345, "fill": "black"}))
    assert label == "rotate_small(angle=12.3, fill=black)"
    assert "seed" not in A.describe(A.sample("gaussian_noise", np.random.default_rng(0)))


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((32, 32, 3), dtype=np.float32), "dtype uint8"),
        (np.zeros((32, 32), dtype=np.uint8), "HxWx3"),
        (np.zeros((32, 32, 4), dtype=np.uint8), "HxWx3"),
        (np.zeros((8, 32, 3), dtype=np.uint8), ">= 16"),
        ([[0, 1]], "numpy array"),
    ],
)
def test_bad_images_raise(image, match):
    with pytest.raises(ValueError, match=match):
        A.apply(image, A.Alteration("hflip", {}))


def test_bad_alterations_raise():
    with pytest.raises(ValueError, match="unknown alteration family 'twirl'.*crop_resize"):
        A.sample("twirl", np.random.default_rng(0))
    with pytest.raises(ValueError, match="valid names"):
        A.Alteration("twirl", {})
    with pytest.raises(ValueError, match="missing params"):
        A.Alteration("jpeg", {})
    with pytest.raises(ValueError, match="unknown alteration family 'compose'"):
        A.Alteration("compose", {"steps": [{"family": "compose", "params": {"steps": []}}]})
    with pytest.raises(ValueError, match="not valid JSON"):
        A.Alteration.from_json("{nope")
    with pytest.raises(ValueError, match="'family' and 'params'"):
        A.Alteration.from_json('{"family": "hflip"}')
    with pytest.raises(ValueError, match="unknown strength"):
        A.sample("jpeg", np.random.default_rng(0), strength="extreme")
    with pytest.raises(ValueError, match="empty"):
        A.random_alteration(np.random.default_rng(0), families=[])
    with pytest.raises(ValueError, match="must be an Alteration"):
        A.apply(textured(), "hflip")
    with pytest.raises(ValueError, match="unknown fill"):
        A.apply(textured(), A.Alteration("rotate_small", {"angle": 5.0, "fill": "white"}))


def test_read_only_input_is_accepted_without_warnings():
    image = textured()
    image.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = A.apply(image, A.sample("compose", np.random.default_rng(0)))
    assert out.shape == image.shape
