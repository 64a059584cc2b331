"""Notebooks 01-02 steps: source specs, build (subsample, split), save/load, pair tables."""

import json

import numpy as np
import pandas as pd
import pytest
from tests_helpers import synthetic

from bfutils import augment, pairs, paths, prepare


@pytest.fixture()
def run_dir(tmp_path, monkeypatch):
    """The active run folder (its ``data`` is where prepare saves) under tmp_path."""
    monkeypatch.setenv("BFUTILS_RUN_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


@pytest.fixture()
def fake_sources(monkeypatch, tmp_path):
    """``data.build_dataset`` replaced by small synthetic sources (no files, no downloads).

    Each source has 10 groups of 2-6 images (sizes ``2 + g % 5``), ids prefixed by its name.
    """
    calls = []

    def build_dataset(specs, size, on_error):
        (spec,) = specs
        calls.append({"spec": spec, "size": size, "on_error": on_error})
        m, images = synthetic(n_groups=10, per_group=6, size=size)
        m = m[m["image_id"].map(lambda i: int(i.split(":")[2]) < 2 + int(i.split(":")[1]) % 5)]
        keep = m.index.to_numpy()
        m = m.assign(image_id=spec["source"] + ":" + m["image_id"],
                     group=spec["source"] + ":" + m["group"]).reset_index(drop=True)  # fmt: skip
        return m, images[keep]

    monkeypatch.setattr(prepare.data, "build_dataset", build_dataset)
    monkeypatch.setattr(paths, "shared", lambda name: tmp_path / "shared" / name)
    return calls


def test_source_specs(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "shared", lambda name: tmp_path / name)
    assert prepare.source_specs(" embedded , ") == [{"source": "embedded", "root": None}]
    specs = prepare.source_specs("embedded,folder", data_root=",/x")
    assert specs == [{"source": "embedded", "root": None}, {"source": "folder", "root": "/x"}]
    assert prepare.source_specs("dsb2018")[0]["root"] is None  # no shared copy: download
    (tmp_path / "dsb2018").mkdir()
    assert prepare.source_specs("dsb2018")[0]["root"] == str(tmp_path / "dsb2018")
    with pytest.raises(ValueError, match="gives 1 roots for 2 sources"):
        prepare.source_specs("embedded,bccd", data_root="/x")
    with pytest.raises(ValueError, match="unknown source 'nope'; known: .*embedded"):
        prepare.source_specs("nope")
    with pytest.raises(ValueError, match="'folder' needs a data_root"):
        prepare.source_specs("folder")


def test_build_splits_by_group_and_subsamples_whole_groups(fake_sources):
    manifest, images = prepare.build("embedded,bccd", "", image_size=24, split="70/10/20", seed=0)
    assert len(manifest) == len(images) == 2 * 40 and images.shape[1:] == (24, 24, 3)
    assert [c["spec"]["source"] for c in fake_sources] == ["embedded", "bccd"]
    assert all(c["size"] == 24 and c["on_error"] == "raise" for c in fake_sources)
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert (manifest.groupby("group")["split"].nunique() == 1).all()
    small, _ = prepare.build("embedded", "", image_size=24, split="70/10/20", seed=0,
                             max_per_source=15)  # fmt: skip
    sizes = small.groupby("group").size()
    assert 0 < len(small) <= 15 and (sizes == 2 + sizes.index.str[-1].astype(int) % 5).all()


def test_build_refuses_duplicate_ids_across_sources(fake_sources):
    with pytest.raises(ValueError, match="duplicate image ids"):
        prepare.build("embedded,embedded", "", image_size=24, split="70/10/20", seed=0)


def test_save_then_load_round_trips_in_the_run_folder(run_dir):
    m, images = synthetic(n_groups=6, per_group=2, size=16)
    m["split"] = pairs.assign_splits(m, seed=0)
    prepare.save(m, images, params={"image_size": 16})
    data = run_dir / "data"
    assert json.loads((data / "dataset.json").read_text()) == {"image_size": 16}
    assert list(pd.read_csv(data / "manifest.csv").columns[:5]) == prepare.MANIFEST_COLUMNS
    back, back_images = prepare.load()
    assert np.array_equal(back_images, images)
    pd.testing.assert_frame_equal(back[m.columns], m, check_dtype=False)
    prepare.save(m.iloc[:-1], images, params={})
    with pytest.raises(ValueError, match="11 rows"):
        prepare.load()


def test_load_without_data_says_which_notebook_to_run(run_dir):
    with pytest.raises(FileNotFoundError, match="run notebook 01_prepare_data first"):
        prepare.load()


def test_eval_pairs_are_saved_and_summarised(run_dir):
    m, images = synthetic(n_groups=12, per_group=4, size=24)
    m["split"] = pairs.assign_splits(m, seed=0)
    (run_dir / "data").mkdir(parents=True)
    tables = prepare.make_eval_pairs(m, images, n_val=10, n_test=20, seed=0,
                                     config=pairs.PairConfig())  # fmt: skip
    assert {s: len(t) for s, t in tables.items()} == {"val": 10, "test": 20}
    back, a, b = pairs.load_pairs(run_dir / "data", "test")
    assert list(back["pair_id"]) == list(tables["test"]["pair_id"]) and len(a) == len(b) == 20
    summary = prepare.pair_summary(tables).set_index("kind")
    assert summary.sum().to_dict() == {"val": 10, "test": 20}
    assert summary.loc["positive", "test"] == (tables["test"]["label"] == 1).sum() == 8
    shown = prepare.hard_negative_examples(tables["test"], n=3)
    hard = shown[shown["label"] == 0]
    assert 0 < len(hard) <= 3 and (hard["negative_kind"] == "hard").all()
    pos = shown[shown["label"] == 1]
    assert len(pos) and set(pos["image_a"]) <= set(hard["image_a"])  # shown beside its copy


def test_split_counts_and_alteration_examples():
    m, images = synthetic(n_groups=12, per_group=3, size=24)
    m["split"] = pairs.assign_splits(m, seed=0)
    counts = prepare.split_counts(m)
    assert counts["images"].sum() == 36 and counts["groups"].sum() == 12
    assert set(counts["modality"]) == {"mri", "tiles"}
    imgs, table = prepare.alteration_examples(images[0])
    assert list(table["family"]) == ["original", *augment.FAMILIES]
    assert np.array_equal(imgs[0], images[0]) and all(i.shape == images[0].shape for i in imgs)
    assert not np.array_equal(imgs[table.index[table["family"] == "hflip"][0]], images[0])
