"""Tables come from prediction files; the README block is generated."""

import numpy as np
import pandas as pd
import pytest

from bfutils import pairs, report, results


def _pred(model, rng, strength=1.0):
    rows = []
    for split, n in (("val", 100), ("test", 200)):
        label = (np.arange(n) % 5 < 2).astype(int)
        kind = np.where(label == 1, "", np.where(np.arange(n) % 2, "hard", "easy"))
        score = label * strength + rng.normal(0, 1, n)
        rows.append(pd.DataFrame({
            "pair_id": [f"{split}-{k}" for k in range(n)], "split": split, "label": label,
            "score": score, "family": np.where(label == 1, "hflip", ""), "negative_kind": kind,
            "hard_detail": np.where(kind == "hard", "slice+2mm", ""),
        }))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_predictions_roundtrip_and_refusal(tmp_path):
    rng = np.random.default_rng(0)
    p = _pred("joint", rng)
    results.write_predictions(p, tmp_path, "joint")
    back = results.read_predictions(tmp_path)
    assert list(back) == ["joint"] and np.allclose(back["joint"]["score"], p["score"])
    with pytest.raises(ValueError, match="lack"):
        results.write_predictions(p[p["split"] == "test"], tmp_path, "bad")


def test_main_table_has_not_run_rows_and_order():
    rng = np.random.default_rng(0)
    preds = {"phash": _pred("phash", rng, 0.5), "joint": _pred("joint", rng, 2.0)}
    status = pd.DataFrame({"model": ["phash", "clip"], "status": ["ok", "not run: offline"],
                           "seconds": [1.0, 0.0]})  # fmt: skip
    table = report.main_table(preds, status, n_boot=20, seed=0)
    assert list(table["model"]) == ["joint", "phash", "clip"]
    assert table.set_index("model").loc["clip", "status"] == "not run: offline"
    assert np.isnan(table.set_index("model").loc["clip", "roc_auc"])
    ok = table[table["status"] == "ok"]
    assert (ok["roc_auc_lo"] <= ok["roc_auc"]).all() and (ok["roc_auc"] <= ok["roc_auc_hi"]).all()
    assert table.loc[0, "roc_auc"] > table.loc[1, "roc_auc"]


@pytest.mark.parametrize(
    ("detail", "coarse"),
    [("", "easy"), ("slice+2mm", "slice <=2.2mm"), ("slice+4.4mm", "slice 4-6.6mm"),
     ("slice+10mm", "slice >6.6mm"), ("tissue,slice+4mm", "tissue+slice"), ("tile+1", "tile+1"),
     ("frame+3", "frame"), ("tissue", "tissue")],
)  # fmt: skip
def test_coarse_detail(detail, coarse):
    assert pairs.coarse_detail(detail) == coarse


def test_update_readme_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_START}\nSTALE\n{report.README_END}\noutro\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "timings.tsv").write_text("notebook\tseconds\n01_prepare_data\t12.0\n")
    report.update_readme(run, "| a |\n|---|\n| 1 |", readme=readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "STALE" not in text
    assert "| 1 |" in text and "01_prepare_data 12 s" in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="results:start"):
        report.update_readme(run, "x", readme=readme)
