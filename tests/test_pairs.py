"""Splits are disjoint by group; pairs are labelled, recorded and reproducible."""

import numpy as np
import pandas as pd
import pytest
from tests_helpers import synthetic

from bfutils import augment, pairs


def test_parse_split():
    assert pairs.parse_split("70/10/20") == pytest.approx({"train": 0.7, "val": 0.1, "test": 0.2})
    assert pairs.parse_split("80/20") == pytest.approx({"train": 0.72, "val": 0.08, "test": 0.2})
    with pytest.raises(ValueError, match="three positive"):
        pairs.parse_split("50/0/50")
    with pytest.raises(ValueError, match="look like"):
        pairs.parse_split("a/b")


def test_split_is_disjoint_by_group_and_near_target():
    m, _ = synthetic(n_groups=40)
    split = pairs.assign_splits(m, split="70/10/20", seed=3)
    assert split.notna().all()
    assert m.assign(split=split).groupby("group")["split"].nunique().max() == 1
    share = split.value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7, abs=0.08)
    assert share["test"] == pytest.approx(0.2, abs=0.08)
    assert set(split) == {"train", "val", "test"}


def test_split_is_seeded():
    m, _ = synthetic(n_groups=30)
    a = pairs.assign_splits(m, seed=1)
    assert a.equals(pairs.assign_splits(m, seed=1))
    assert not a.equals(pairs.assign_splits(m, seed=2))


def test_check_disjoint_catches_a_straddling_group():
    m, _ = synthetic(n_groups=3)
    m["split"] = "train"
    m.loc[0, "split"] = "test"
    with pytest.raises(AssertionError, match="straddle"):
        pairs.check_disjoint(m)


def test_hard_detail_names_distance_and_tissue():
    r = pd.Series({"stack": "T1", "stack_kind": "tissue", "axis": "axial", "pos": 10.0,
                   "pos2": 0.0, "unit": "mm"})  # fmt: skip
    assert pairs.hard_detail(r, r.copy().replace({10.0: 14.0})) == "slice+4mm"
    assert pairs.hard_detail(r, r.copy().replace({"T1": "gm"})) == "tissue"
    t = pd.Series({"stack": "ihc", "stack_kind": "", "axis": "tile", "pos": 1.0, "pos2": 2.0,
                   "unit": "tile"})  # fmt: skip
    assert pairs.hard_detail(t, t.copy().replace({2.0: 3.0})) == "tile+1"


@pytest.fixture(scope="module")
def made():
    m, images = synthetic()
    m["split"] = pairs.assign_splits(m, seed=0)
    return m, images, pairs.make_pairs(m, images, split="test", n_pairs=130, seed=7, progress=False)


def test_pairs_stay_in_their_split_and_are_labelled(made):
    m, _, (table, a, b) = made
    split_of = dict(zip(m["image_id"], m["split"], strict=True))
    assert set(table["image_a"].map(split_of)) == {"test"}
    assert set(table["image_b"].map(split_of)) == {"test"}
    assert table["label"].mean() == pytest.approx(0.4, abs=0.01)
    pos, neg = table[table["label"] == 1], table[table["label"] == 0]
    assert (pos["image_a"] == pos["image_b"]).all() and (pos["negative_kind"] == "").all()
    easy, hard = neg[neg["negative_kind"] == "easy"], neg[neg["negative_kind"] == "hard"]
    assert (easy["group_a"] != easy["group_b"]).all()
    assert (hard["group_a"] == hard["group_b"]).all() and (hard["image_a"] != hard["image_b"]).all()
    assert (hard["hard_detail"] != "").all()
    assert len(hard) / len(neg) >= 0.25
    assert a.shape == b.shape == (130, 32, 32, 3)


def test_every_pair_records_its_alteration_and_it_reproduces(made):
    m, images, (table, a, b) = made
    pos = table[table["label"] == 1]
    assert set(augment.FAMILIES) <= set(pos["family"])
    assert (pos["alter_b"] != "").all()
    altered_neg = table[(table["label"] == 0) & (table["alter_b"] != "")]
    assert len(altered_neg) > 0 and (altered_neg["family"] != "").all()
    plain_neg = table[(table["label"] == 0) & (table["alter_a"] == "") & (table["alter_b"] == "")]
    assert (plain_neg["family"] == "").all()
    k = pos.index[0]
    alt = augment.Alteration.from_json(pos.at[k, "alter_b"])
    assert np.array_equal(b[k], augment.apply(images[pos.at[k, "idx_b"]], alt))


def test_same_seed_same_pairs(made):
    m, images, (table, a, b) = made
    t2, a2, b2 = pairs.make_pairs(m, images, split="test", n_pairs=130, seed=7, progress=False)
    pd.testing.assert_frame_equal(table, t2)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    t3, _, _ = pairs.make_pairs(m, images, split="test", n_pairs=130, seed=8, progress=False)
    assert not table.equals(t3)


def test_easy_negatives_are_never_near_identical():
    m, images = synthetic()
    images[6:12] = images[0:6]  # group 1 duplicates group 0 pixel for pixel
    m["split"] = "test"
    table, _, _ = pairs.make_pairs(m, images, split="test", n_pairs=300, seed=0, progress=False)
    easy = table[table["negative_kind"] == "easy"]
    twins = (
        (easy["idx_a"] < 12) & (easy["idx_b"] < 12) & ((easy["idx_a"] - easy["idx_b"]).abs() == 6)
    )
    assert len(easy) > 50 and not twins.any()


def test_sampler_draws_training_pairs_with_the_same_rules(made):
    m, images, _ = made
    sampler = pairs.PairSampler(m, images, seed=0)
    a, b, labels, plan = sampler.batch(40)
    assert a.shape == b.shape == (40, 32, 32, 3) and labels.shape == (40,)
    split_of = dict(zip(m["image_id"], m["split"], strict=True))
    assert set(plan["image_a"].map(split_of)) == {"train"}
    assert labels.mean() == pytest.approx(0.4, abs=0.03)


def test_save_and_load_roundtrip(made, tmp_path):
    _, _, (table, a, b) = made
    pairs.save_pairs(table, a, b, folder=tmp_path, split="test")
    t2, a2, b2 = pairs.load_pairs(tmp_path, "test")
    assert list(t2["pair_id"]) == list(table["pair_id"]) and np.array_equal(a, a2)
    with pytest.raises(FileNotFoundError, match="02_make_pairs"):
        pairs.load_pairs(tmp_path, "val")


def test_make_pairs_rejects_misaligned_inputs():
    m, images = synthetic()
    m["split"] = "test"
    with pytest.raises(ValueError, match="rows but there are"):
        pairs.make_pairs(m, images[:-1], split="test", n_pairs=10, seed=0)
    with pytest.raises(ValueError, match="no images in split"):
        pairs.make_pairs(m, images, split="val", n_pairs=10, seed=0)


def test_groups_without_coordinates_give_sibling_hard_negatives():
    m, images = synthetic(n_groups=6, per_group=4)
    m[["pos", "pos2"]] = 0.0
    m["unit"] = ""
    m["axis"] = ""
    m["stack"] = "s"
    m["split"] = "test"
    table, _, _ = pairs.make_pairs(m, images, split="test", n_pairs=60, seed=0, progress=False)
    hard = table[table["negative_kind"] == "hard"]
    assert len(hard) > 0 and set(hard["hard_detail"]) == {"sibling"}


def test_pair_ids_carry_the_dataset_fingerprint(made):
    m, images, (table, _, _) = made
    tag = pairs.dataset_tag(m, seed=7)
    assert table["pair_id"].str.startswith(f"test-{tag}-").all()
    other = m.assign(image_id=m["image_id"] + "x")
    assert pairs.dataset_tag(other, seed=7) != tag and pairs.dataset_tag(m, seed=8) != tag
