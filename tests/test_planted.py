"""The planted figure benchmark: builder, evaluation and the method run (embedded data only)."""

from __future__ import annotations

import hashlib
import itertools
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bfutils import data, figure_alter, paths, planted, planted_eval, planted_methods

N_PANELS, N_PLANTED = 40, 14  # 14 planted pairs cover all 13 families (partial counts twice)


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("planted") / "bench"
    planted.build(out, n_panels=N_PANELS, n_planted=N_PLANTED, seed=3, sources=["embedded"])
    return out


def _all_pairs(bench: Path, score) -> pd.DataFrame:
    panels, truth = planted_eval.load_benchmark(bench)
    pairs = pd.DataFrame(list(itertools.combinations(panels["file"], 2)), columns=["a", "b"])
    planted_pairs = set(zip(truth["query"], truth["source"], strict=True))
    named = zip(pairs["a"], pairs["b"], strict=True)
    is_true = [(a, b) in planted_pairs or (b, a) in planted_pairs for a, b in named]
    pairs["score"] = score(np.array(is_true))
    return pairs


def test_build_is_reproducible(bench, tmp_path):
    again = tmp_path / "again"
    planted.build(again, n_panels=N_PANELS, n_planted=N_PLANTED, seed=3, sources=["embedded"])
    assert _hashes(again) == _hashes(bench)
    other = tmp_path / "other"
    planted.build(other, n_panels=N_PANELS, n_planted=N_PLANTED, seed=4, sources=["embedded"])
    assert _hashes(other) != _hashes(bench)


def test_build_covers_every_family_and_role(bench):
    panels, truth = planted_eval.load_benchmark(bench)
    assert set(truth["family"]) == set(figure_alter.FAMILIES)
    assert len(panels) == N_PANELS and len(truth) == N_PLANTED
    assert sorted(p.name for p in (bench / "panels").iterdir()) == sorted(panels["file"])
    assert panels["role"].value_counts().to_dict() == {
        "distractor": N_PANELS - 2 * N_PLANTED,
        "query": N_PLANTED,
        "source": N_PLANTED,
    }
    assert truth["image_id"].is_unique  # each source image is reused once, by one query
    assert set(panels["format"]) == {"png", "jpg"}
    assert panels[["width", "height"]].max(axis=None) <= 400


def test_truth_boxes_lie_inside_the_panels(bench):
    _, truth = planted_eval.load_benchmark(bench)
    for row in truth.itertuples():
        with Image.open(bench / "panels" / row.source) as src:
            assert src.size == (row.source_w, row.source_h)
        with Image.open(bench / "panels" / row.query) as qry:
            assert qry.size == (row.query_w, row.query_h)
        assert 0 <= row.src_x0 < row.src_x1 <= row.source_w
        assert 0 <= row.src_y0 < row.src_y1 <= row.source_h
        assert 0 <= row.qry_x0 < row.qry_x1 <= row.query_w
        assert 0 <= row.qry_y0 < row.qry_y1 <= row.query_h


def test_partial_area_fractions_are_in_range(bench):
    _, truth = planted_eval.load_benchmark(bench)
    by = truth.groupby("family")
    assert by.get_group("partial")["area_fraction"].between(0.3, 0.6).all()
    assert by.get_group("crop")["area_fraction"].between(0.6, 0.95).all()
    assert by.get_group("overlap")["overlap_fraction"].between(0.25, 0.75).all()
    full = ~truth["family"].isin(["crop", "partial", "overlap", "compose"])
    assert (truth.loc[full, "area_fraction"] == 1).all()


def test_siblings_are_among_the_distractors(bench):
    panels, _ = planted_eval.load_benchmark(bench)
    siblings = panels[panels["distractor_kind"] == "sibling"]
    assert len(siblings) > 0
    sources = panels[panels["role"] == "source"].set_index("image_id")["group"]
    assert (siblings["group"].to_numpy() == sources.loc[siblings["sibling_of"]].to_numpy()).all()


def test_missing_real_data_falls_back_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SHARED_DATA", tmp_path / "nothing")
    summary = planted.build(tmp_path / "b", n_panels=6, n_planted=2, sources=["embedded", "bccd"])
    assert any("bccd" in note for note in summary["notes"])
    assert summary["sources"] == {"embedded": 6}


def test_real_data_brings_consecutive_capture_siblings(tmp_path, shared_data, monkeypatch):
    # the one real-data fixture: ../shared/data, a cached download, or a skip saying how
    monkeypatch.setattr(paths, "SHARED_DATA", shared_data("bccd").parent)
    planted.build(tmp_path / "b", n_panels=30, n_planted=9, sources=["bccd"], progress=False)
    panels, _ = planted_eval.load_benchmark(tmp_path / "b")
    siblings = panels[panels["distractor_kind"] == "sibling"]
    assert len(siblings) == 9 and (siblings["source"] == "bccd").all()


def test_oracle_scores_are_perfect(bench):
    table = planted_eval.evaluate(bench, _all_pairs(bench, lambda t: t * 1.0), threshold=0.5)
    assert (table["top1"] == 1).all() and (table["muap"] == 1).all()
    assert (table["recall_at_threshold"] == 1).all()
    assert table.iloc[0]["false_per_1000"] == 0 and table.iloc[0]["roc_auc"] == 1.0


def test_pair_roc_auc_matches_sklearn_with_unscored_pairs_tied_at_the_bottom():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 40), rng.normal(0, 1, 300)
    pos[:5] = neg[:50] = -np.inf  # pairs a method never scored
    expected = roc_auc_score(
        np.r_[np.ones(40), np.zeros(300)], np.nan_to_num(np.r_[pos, neg], neginf=-1e9)
    )
    assert planted_eval._pair_roc_auc(pos, neg) == pytest.approx(expected)


def test_random_scores_are_near_chance(bench):
    rng = np.random.default_rng(0)
    table = planted_eval.evaluate(bench, _all_pairs(bench, lambda t: rng.random(len(t))))
    overall = table.iloc[0]
    assert overall["group"] == "all" and overall["n"] == N_PLANTED
    assert overall["top1"] <= 0.25  # chance is 1 / (N_PANELS - 1)
    assert overall["muap"] < 0.1 and 0.35 < overall["roc_auc"] < 0.65
    assert np.isnan(overall["false_per_1000"])  # no threshold given


def test_false_pairs_per_thousand_on_a_hand_made_case(tmp_path):
    files = ["q.png", "s.png", "d1.png", "d2.png"]
    pd.DataFrame({"file": files, "group": ["g1", "g1", "g1", "g2"]}).to_csv(
        tmp_path / "panels.csv", index=False
    )
    truth = {"query": "q.png", "source": "s.png", "family": "crop", "size_band": "<64"}
    pd.DataFrame([{**truth, "area_fraction": 0.5}]).to_csv(tmp_path / "truth.csv", index=False)
    scores = pd.DataFrame(
        [("q.png", "s.png", 0.9), ("s.png", "d1.png", 0.8), ("d2.png", "q.png", 0.6),
         ("d1.png", "d2.png", 0.4), ("panels/d1.png", "q.png", 0.95)],
        columns=["a", "b", "score"],
    )  # fmt: skip
    overall = planted_eval.evaluate(tmp_path, scores, threshold=0.5).iloc[0]
    # negatives >= 0.5: (s, d1), (d2, q), (d1, q) -> 3 per 4 panels; (s, d1) and (d1, q) siblings
    assert overall["false_per_1000"] == 750 and overall["false_sibling_per_1000"] == 500
    assert overall["top1"] == 0 and overall["recall10"] == 1  # d1 outranks the source
    # the planted pair ranks second among the five scored pairs; the sixth pair is missing
    assert overall["muap"] == pytest.approx(0.5)


def test_run_writes_the_table_and_says_why_a_method_did_not_run(bench, tmp_path, monkeypatch):
    import imagededup.methods

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(imagededup.methods, "CNN", offline)
    oracle = {"oracle": lambda b, w: (_all_pairs(b, lambda t: t * 1.0), 0.5)}
    table = planted_methods.run(
        bench, tmp_path, methods=["imagededup-phash", "imagededup-cnn"], extra=oracle
    )
    status = table[table["group_kind"] == "all"].set_index("method")["status"]
    assert status["imagededup-phash"] == "ok" and status["oracle"] == "ok"
    assert status["imagededup-cnn"].startswith("not run: RuntimeError: MobileNetV3 weights")
    for name in ("table.csv", "table.md", "planted_benchmark.png", "planted_benchmark.csv"):
        assert (tmp_path / name).is_file()
    assert "| oracle | ok | 1.000 |" in (tmp_path / "table.md").read_text()


def test_pixel_twins_are_dropped_from_the_pool():
    # a distractor that is a pixel twin of a source would be an unlabelled copy; the embedded
    # source itself has none since its mirrored MNI sagittal slices were dropped
    pool, notes = planted.load_pool(["embedded"])
    keys = [planted.content_key(data.record_pixels(rec)) for rec in pool.itertuples()]
    assert len(set(keys)) == len(keys)
    assert not any("pixel twins" in n for n in notes)
    twice = pd.concat([pool, pool.iloc[:3]], ignore_index=True)
    assert planted.drop_twins(twice).sum() == 3
    tile = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    assert planted.content_key(tile) == planted.content_key(tile.copy())
    assert planted.content_key(tile) != planted.content_key(np.roll(tile, 8, axis=1))


def _tiny_run(folder: Path, freeze: bool) -> Path:
    """A run folder with what ``run-*`` methods read: a tiny saved model and notebook 01's
    parameters."""
    import json

    import torch

    from bfutils import models, train

    folder.mkdir(parents=True)
    torch.manual_seed(0)
    model = models.build_model(encoder="resnet18", projector_widths=(32, 32, 16), head_hidden=16)
    cfg = train.TrainConfig(
        encoder="resnet18", pretrained="imagenet" if freeze else None, input_size=32,
        projector_widths=(32, 32, 16), head_hidden=16, schedule="joint", freeze_backbone=freeze,
    )  # fmt: skip
    train.save_model(model, cfg, folder / "model_joint.pt")
    (folder / "params_01_prepare_data.json").write_text(json.dumps({"params": {"image_size": 48}}))
    return folder


def test_run_models_score_every_pair_with_the_saved_model(bench, tmp_path, monkeypatch):
    from bfutils import retrieval
    from bfutils.data import read_image_file
    from bfutils.data.pixels import fit_square

    run = _tiny_run(tmp_path / "run", freeze=True)
    monkeypatch.setattr(planted_methods, "RUN", str(run))
    scores, threshold = planted_methods.METHODS["run-joint"](bench, tmp_path)
    files = planted_methods.panel_files(bench)
    assert threshold is None and len(scores) == len(files) * (len(files) - 1) // 2
    # the first pair, scored directly by the model's pair head
    pair = np.stack([fit_square(read_image_file(f), size=48, fit="pad") for f in files[:2]])
    build = {"queries": pair[:1], "references": pair[1:], "gt": np.array([-1]), "table": None}
    direct = retrieval.similarity("pair_model", build, model_path=run / "model_joint.pt",
                                  progress=False)[0, 0]  # fmt: skip
    assert scores.iloc[0]["score"] == pytest.approx(direct, abs=1e-5)
    cos, _ = planted_methods.METHODS["run-encoder"](bench, tmp_path)
    assert len(cos) == len(scores) and cos["score"].between(-1.0001, 1.0001).all()


def test_run_models_say_what_is_missing(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(planted_methods, "RUN", str(tmp_path / "no-such-run"))
    table = planted_methods.run(bench, tmp_path / "out", methods=["run-joint"])
    assert "not run" in table.iloc[0]["status"]
    run = _tiny_run(tmp_path / "trained", freeze=False)
    monkeypatch.setattr(planted_methods, "RUN", str(run))
    with pytest.raises(ValueError, match="not the untrained encoder"):
        planted_methods.METHODS["run-encoder"](bench, tmp_path)


def test_summary_row_per_method_and_the_readme_block(bench, tmp_path):
    from bfutils import report

    oracle = {"oracle": lambda b, w: (_all_pairs(b, lambda t: t * 1.0), 0.5)}
    table = planted_methods.run(bench, tmp_path / "out", methods=[], extra=oracle)
    failed = planted_eval.not_run("broken", "RuntimeError: no weights")
    md = planted_eval.summary(pd.concat([table, failed], ignore_index=True))
    lines = md.strip().splitlines()
    assert lines[0].startswith("| method | rank 1 | recall@10 | muAP | false / 1,000")
    assert lines[2].startswith("| oracle | 1.000 | 1.000 | 1.000 | 0 |")
    assert lines[2].endswith("| 1.000 |")  # pair ROC-AUC
    assert lines[3].startswith("| broken | not run: RuntimeError: no weights |")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- planted:start -->\nold\n<!-- planted:end -->\noutro\n")
    report.replace_block("planted", md, readme=readme)
    text = readme.read_text()
    assert "old" not in text and "| oracle | 1.000" in text
    assert text.startswith("intro\n") and text.endswith("<!-- planted:end -->\noutro\n")
    with pytest.raises(ValueError, match="no <!-- other:start -->"):
        report.replace_block("other", md, readme=readme)


def test_side_by_side_names_planted_methods_as_the_synthetic_table_does():
    from bfutils import planted_methods as pm

    synthetic = pd.DataFrame({"model": ["joint", "imagenet_cnn", "fused"],
                              "roc_auc": [0.94, 0.87, 0.99]})  # fmt: skip
    rows = [
        {"method": "run-joint", "group_kind": "all", "top1": 0.3, "recall10": 0.5,
         "muap": 0.1, "roc_auc": 0.9},
        {"method": "run-joint", "group_kind": "family", "top1": 0.1, "recall10": 0.2,
         "muap": 0.0, "roc_auc": 0.5},
        {"method": "run-encoder", "group_kind": "all", "top1": 0.25, "recall10": 0.45,
         "muap": 0.08, "roc_auc": 0.92},
        {"method": "cosine-lite0-224", "group_kind": "all", "top1": 0.2, "recall10": 0.4,
         "muap": 0.03, "roc_auc": 0.89},
        {"method": "run-joint", "group_kind": "training", "group": "unseen", "top1": 0.15,
         "recall10": 0.3, "muap": 0.05, "roc_auc": 0.8},
    ]  # fmt: skip
    side = pm.side_by_side(synthetic, pd.DataFrame(rows))
    assert list(side.index) == ["joint", "imagenet_cnn", "cosine-lite0-224"]
    assert side.loc["joint", "synthetic test ROC-AUC"] == 0.94
    assert side.loc["imagenet_cnn", "planted rank 1"] == 0.25
    assert np.isnan(side.loc["cosine-lite0-224", "synthetic test ROC-AUC"])
    assert side.loc["joint", "planted rank 1, unseen sources"] == 0.15
    assert np.isnan(side.loc["imagenet_cnn", "planted rank 1, unseen sources"])


def test_training_pairs_are_seeded_padded_panels_of_every_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 48, 48, 3), dtype=np.uint8)
    src, qry = planted.training_pairs(images, 2, np.random.default_rng(5))
    again, _ = planted.training_pairs(images, 2, np.random.default_rng(5))
    assert len(src) == len(qry) == 2 and src[0].shape == qry[1].shape == images.shape
    assert all(np.array_equal(a, b) for a, b in zip(src, again, strict=True))
    assert not np.array_equal(src[0], src[1])  # two draws per image differ
    # a figure panel keeps the image's content: closer to its own image than to the others
    for k in range(2):
        for i in range(3):
            d = [np.abs(src[k][i].astype(int) - images[j]).mean() for j in range(3)]
            assert np.argmin(d) == i


def test_seen_and_unseen_sources_are_scored_apart(bench):
    _, truth = planted_eval.load_benchmark(bench)
    seen = set(truth["image_id"].iloc[:2])
    oracle = _all_pairs(bench, lambda t: t * 1.0)
    table = planted_eval.evaluate(bench, oracle, seen_ids=seen).set_index(["group_kind", "group"])
    assert table.loc[("training", "seen"), "n"] == truth["image_id"].isin(seen).sum()
    assert table.loc[("training", "unseen"), "n"] == (~truth["image_id"].isin(seen)).sum()
    assert "training" not in set(planted_eval.evaluate(bench, oracle)["group_kind"])


def test_content_names_the_source_and_the_kind_of_picture():
    assert planted_eval.content_of("dsb2018:f67e72b7") == "dsb2018"
    assert planted_eval.content_of("embedded:mni:T1:coronal:061") == "embedded:mni"
    assert planted_eval.content_of("graphics:blot:g03:r1") == "graphics:blot"


def test_drawn_graphics_join_the_benchmark_with_their_replicates_as_siblings(tmp_path):
    out = tmp_path / "g"
    planted.build(out, n_panels=40, n_planted=10, sources=["graphics"], progress=False)
    panels, truth = planted_eval.load_benchmark(out)
    assert set(panels["source"]) == {"graphics"} and len(truth) == 10
    siblings = panels[panels["distractor_kind"] == "sibling"]
    assert len(siblings) == 10 and siblings["group"].isin(truth["group"]).all()
    table = planted_eval.evaluate(out, _all_pairs(out, lambda t: t * 1.0))
    content = set(table.loc[table["group_kind"] == "content", "group"])
    assert content and content == {f"graphics:{k}" for k in truth["image_id"].str.split(":").str[1]}
    block = planted_eval.by_content(table.assign(method="oracle"))
    lines = block.strip().splitlines()
    assert lines[0] == "| content (planted pairs) | oracle |"
    assert lines[2] == "| all (10) | 1.000 / 1.000 |"
    assert all(" / " in line for line in lines[2:])
    with pytest.raises(ValueError, match="more than one table"):
        planted_eval.by_content(pd.concat([table, table]).assign(method="oracle"))
    with pytest.raises(ValueError, match="unknown source"):
        planted.load_pool(("graphic",))


def test_calibration_graphics_are_other_experiments_than_the_benchmarks(tmp_path):
    from bfutils import calibset

    _, panels, truth, _ = calibset.build(
        n_panels=40, n_planted=10, seed=1, sources=("embedded", "graphics")
    )
    drawn = panels.loc[panels["source"] == "graphics", "group"]
    assert len(drawn) and len(truth) == 10
    numbers = drawn.str.extract(r":g(\d+)$")[0].astype(int)
    assert (numbers >= calibset.GRAPHICS_FIRST_GROUP).all()
    bench_dir = tmp_path / "b"
    planted.build(bench_dir, n_panels=60, n_planted=15, sources=["graphics"], progress=False)
    bench, _ = planted_eval.load_benchmark(bench_dir)
    used = bench["group"].str.extract(r":g(\d+)$")[0].astype(int)
    assert (used < calibset.GRAPHICS_FIRST_GROUP).all()
    assert not set(bench["image_id"]) & set(panels["image_id"])
