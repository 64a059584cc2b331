"""Every saved figure has its data beside it; the figure functions return figures."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bfutils import plots


@pytest.fixture(autouse=True)
def _headless():
    """No display in tests: the Agg backend, every figure closed afterwards."""
    plt.switch_backend("Agg")
    yield
    plt.close("all")


def _images(n, size=12):
    return np.random.default_rng(0).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_save_writes_the_png_and_the_plotted_data(tmp_path):
    fig, ax = plt.subplots()
    data = pd.DataFrame({"x": [0, 1, 2], "y": [0.5, 0.25, 1.0], "label": ["a", "b", "c"]})
    ax.plot(data["x"], data["y"])
    png = plots.save(fig, "01_line", data, folder=tmp_path / "figs")
    assert png == tmp_path / "figs" / "01_line.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and min(im.size) > 50
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "figs" / "01_line.csv"), data)
    assert not plt.fignum_exists(fig.number)  # closed: a notebook loop does not pile them up


def test_save_defaults_to_the_figures_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BFUTILS_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("BFUTILS_RUN_DIR", str(tmp_path / "run"))
    fig, _ = plt.subplots()
    png = plots.save(fig, "02_empty", pd.DataFrame({"a": [1]}))
    assert png.parent.is_relative_to(tmp_path) and png.is_file()
    assert png.with_suffix(".csv").read_text() == "a\n1\n"


def test_image_grid_has_a_titled_panel_per_image():
    fig = plots.image_grid(_images(5), [f"t{k}" for k in range(5)], ncols=3)
    axes = fig.get_axes()
    assert len(axes) == 6  # 2 rows x 3 columns, the last left empty
    assert [ax.get_title() for ax in axes[:5]] == ["t0", "t1", "t2", "t3", "t4"]
    assert all(len(ax.images) == 1 for ax in axes[:5]) and not axes[5].images


def test_gallery_samples_each_source():
    manifest = pd.DataFrame({"image_id": [f"id{k}" for k in range(9)],
                             "source_name": ["a"] * 6 + ["b"] * 3})  # fmt: skip
    fig, rows = plots.gallery(manifest, _images(9), per_source=2)
    assert list(rows["source_name"]) == ["a", "a", "b", "b"] and "index" not in rows
    assert sum(len(ax.images) for ax in fig.get_axes()) == 4


def test_history_plots_losses_and_validation_score():
    log = pd.DataFrame({"phase": ["bt"] * 3 + ["bce"] * 3, "epoch": [0, 1, 2] * 2,
                        "val_roc_auc": [0.5, 0.6, 0.7, 0.7, 0.8, 0.85],
                        "loss_bt": [3.0, 2.0, 1.5, np.nan, np.nan, np.nan],
                        "loss_total": [3.0, 2.0, 1.5, 0.7, 0.6, 0.5]})  # fmt: skip
    fig = plots.history(log, title="joint")
    loss, auc = fig.get_axes()
    assert auc.get_title() == "joint validation ROC-AUC" and auc.get_ylabel() == "val_roc_auc"
    assert loss.get_yscale() == "log" and len(loss.get_lines()) >= 3


def test_roc_curves_label_models_by_auc_best_first():
    curves = pd.DataFrame({"model": ["x"] * 3 + ["y"] * 3, "fpr": [0, 0.5, 1] * 2,
                           "tpr": [0, 0.6, 1, 0, 0.9, 1],
                           "auc": [0.6] * 3 + [0.9] * 3})  # fmt: skip
    fig = plots.roc_curves(curves)
    labels = [t.get_text() for t in fig.get_axes()[0].get_legend().get_texts()]
    assert labels == ["y (0.900)", "x (0.600)"]


def test_panel_figures_have_one_panel_each():
    scores = pd.DataFrame({"model": ["m1"] * 4 + ["m2"] * 4, "kind": ["positive", "easy"] * 4,
                           "score": np.linspace(0, 1, 8)})  # fmt: skip
    assert [ax.get_title() for ax in plots.score_distributions(scores, ["m1", "m2"]).axes] == [
        "m1", "m2"
    ]  # fmt: skip
    table = pd.DataFrame([[0.1, 0.9], [0.5, 0.4]], index=["r1", "r2"], columns=["c1", "c2"])
    heat = plots.heatmap(table, title="recall")
    assert heat.axes[0].get_title() == "recall" and len(heat.axes[0].texts) == 4
    bars = plots.counts(pd.DataFrame({"s": ["a", "b"], "n": [3, 5], "h": ["x", "x"]}),
                        x="s", y="n", hue="h", title="counts")  # fmt: skip
    assert sorted(p.get_height() for p in bars.axes[0].patches if p.get_height()) == [3, 5]
    pairs_df = pd.DataFrame({"label": [1, 0, 1]})
    strip = plots.pair_strip(pairs_df, _images(3), _images(3), title_fn=lambda r: str(r.label))
    assert len(strip.axes) == 6 and [ax.get_title() for ax in strip.axes[:3]] == ["1", "0", "1"]


def test_roc_curves_give_every_model_its_own_look():
    names = [f"m{i:02d}" for i in range(14)]  # more models than colours in a cycle
    curves = pd.DataFrame([{"model": n, "fpr": f, "tpr": f, "auc": 0.5 + i / 100}
                           for i, n in enumerate(names) for f in (0.0, 1.0)])  # fmt: skip
    lines = plots.roc_curves(curves).get_axes()[0].get_lines()[:14]
    looks = {(tuple(np.round(matplotlib.colors.to_rgb(ln.get_color()), 3)), ln.get_linestyle())
             for ln in lines}  # fmt: skip
    assert len(looks) == 14
