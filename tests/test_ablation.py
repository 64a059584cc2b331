"""The ablation's scores on hand-made similarity matrices, its variant names and verdicts."""

import numpy as np
import pandas as pd
import pytest

from bfutils import ablation


def _truth():
    return pd.DataFrame({"query": [0, 2], "source": [1, 3], "family": ["crop", "blur"]})


def test_planted_scores_count_rank1_hits_and_pair_auc():
    sim = np.full((5, 5), 0.1)
    sim[0, 1] = sim[1, 0] = 0.9  # planted pair 0-1: its partner is first
    sim[2, 3] = sim[3, 2] = 0.5  # planted pair 2-3: panel 4 outranks the partner
    sim[2, 4] = sim[4, 2] = 0.6
    np.fill_diagonal(sim, np.nan)
    s = ablation.planted_scores(sim, _truth(), n_boot=50, seed=0)
    assert s["planted_rank1"] == 0.5
    # 8 other pairs: 0.9 beats all 8, 0.5 beats 7 of them (not 0.6)
    assert s["planted_auc"] == pytest.approx((8 + 7) / 16)
    assert s["planted_rank1_low"] <= 0.5 <= s["planted_rank1_high"]
    assert s["planted_auc_low"] <= s["planted_auc"] <= s["planted_auc_high"]


def test_select_names_and_refuses_unknown_ones():
    assert list(ablation.select("joint (paper), cosine residual")) == [
        "joint (paper)", "cosine residual"]  # fmt: skip
    assert ablation.select("all") == ablation.VARIANTS
    with pytest.raises(ValueError, match="unknown ablation variants.*known"):
        ablation.select("joint (paper),bigger")


def test_verdict_compares_each_variant_with_the_encoder_at_its_size():
    cols = {"synthetic_auc": 0.9, "planted_auc": 0.8, "planted_rank1": 0.3}
    rows = [
        {"variant": "a", "kind": "trained", "input_size": 96, **cols},
        {"variant": "b", "kind": "trained", "input_size": 160, **cols},
        {"variant": "enc 96", "kind": "reference", "input_size": 96, **cols, "planted_auc": 0.7},
        {"variant": "enc 160", "kind": "reference", "input_size": 160, **cols, "planted_auc": 0.85},
    ]
    text = ablation.verdict(pd.DataFrame(rows)).splitlines()
    assert "planted AUC 0.800 vs 0.700 (beats)" in text[0] and text[0].endswith("96 px")
    assert "planted AUC 0.800 vs 0.850 (does not beat)" in text[1]


def test_validation_panels_avoid_the_evaluation_benchmark_and_excluded_images(monkeypatch):
    """The benchmark's draw is taken on the pool it is built from, before the exclusion, so
    neither its images nor the excluded (training) ones reach the validation panels."""
    from bfutils import calibset, planted

    pool, notes = planted.load_pool(["embedded"])
    monkeypatch.setattr(planted, "load_pool", lambda: (pool.copy(), list(notes)))
    holdout = {"seed": 0, "n_panels": 300, "n_planted": 60}
    held = calibset.heldout_ids(pool, **holdout)
    exclude = set(pool["image_id"].iloc[::5]) - held
    _, panels, truth, out_notes = calibset.build(
        n_panels=40, n_planted=10, seed=3, holdout=holdout, exclude=exclude
    )
    used = set(panels["image_id"])
    assert len(truth) == 10 and not used & held and not used & exclude
    assert any("held out" in n for n in out_notes)


def test_the_encoder_reference_does_not_depend_on_the_variant():
    """A variant whose last encoder stage trains must not lend its trained encoder to the
    untrained-encoder reference row: that row is the same whichever variant comes first."""
    from tests_helpers import synthetic

    from bfutils import pairs, train

    m, images = synthetic(n_groups=14, per_group=6, size=32)
    m["split"] = pairs.assign_splits(m, seed=0)
    ev = {"val": pairs.make_pairs(m, images, split="val", n_pairs=40, seed=0, progress=False)}
    validation = {"images": [images[i] for i in range(12)], "truth": _truth()}
    base = train.TrainConfig(
        schedule="joint", encoder="resnet18", pretrained=None, input_size=32,
        projector_widths=(32, 32, 16), head_hidden=16, epochs=1, steps_per_epoch=2,
        batch_size=16, cache_views=2, device="cpu",
    )  # fmt: skip
    runs = [
        ablation.run(
            base, m, images, ev, validation, variants={name: changes}, n_boot=10, progress=False
        )  # fmt: skip
        for name, changes in (("tail", {"train_stages": 1}), ("plain", {}))
    ]
    tail, plain = (r[r["kind"] == "reference"].iloc[0] for r in runs)
    for col in ("synthetic_auc", "planted_auc", "planted_rank1"):
        assert tail[col] == pytest.approx(plain[col])
    trained = runs[0][runs[0]["kind"] == "trained"].iloc[0]
    assert trained["changes"] == "train_stages=1"
