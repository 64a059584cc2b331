"""Run folders: two runs compared side by side; publishing one is the only way to tracked files."""

import pandas as pd
import pytest

from bfutils import metrics, paths, report, runs


def _fake_run(root, name, aucs):
    folder = root / name / "figures"
    folder.mkdir(parents=True)
    rows = [
        {"model": m, "roc_auc": v, "roc_auc_lo": v - 0.02, "roc_auc_hi": v + 0.01,
         "roc_auc_hard": v - 0.1, "average_precision": 0.5, "f1": 0.5, "n_test": 10}
        for m, v in aucs.items()
    ]  # fmt: skip
    table = metrics.metrics_table(rows)
    table.to_csv(folder / "metrics_table.csv", index=False)
    (folder / "05_roc.png").write_bytes(b"png")
    pd.DataFrame({"model": ["fused"], "top1": [0.9]}).to_csv(
        folder / "retrieval_table.csv", index=False
    )
    return root / name


@pytest.fixture()
def two_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path)
    a = _fake_run(tmp_path, "smoke-1", {"joint": 0.90, "fused": 0.98})
    b = _fake_run(tmp_path, "cells-1", {"joint": 0.80, "keypoints": 0.95})
    return a, b


def test_compare_puts_two_runs_side_by_side(two_runs):
    table = runs.compare("smoke-1", "cells-1")
    assert table.loc["joint", "roc_auc_a"] == 0.90 and table.loc["joint", "roc_auc_b"] == 0.80
    assert table.loc["joint", "roc_auc_diff"] == pytest.approx(-0.10)
    # a model of one run only is kept, with NaN for the other
    assert pd.isna(table.loc["fused", "roc_auc_b"]) and pd.isna(table.loc["keypoints", "roc_auc_a"])


def test_compare_cli_prints_both_runs(two_runs, capsys, tmp_path):
    out = tmp_path / "cmp.csv"
    assert runs.main(["compare", str(two_runs[0]), str(two_runs[1]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "roc_auc_a" in printed and "joint" in printed
    assert pd.read_csv(out, index_col=0).loc["joint", "roc_auc_b"] == 0.80


def test_missing_run_is_named_with_the_known_ones(two_runs, capsys):
    with pytest.raises(FileNotFoundError, match="no-such-run.*smoke-1"):
        runs.resolve("no-such-run")
    assert runs.main(["compare", "no-such-run", "smoke-1"]) == 2
    assert "no-such-run" in capsys.readouterr().err


def test_a_run_without_tables_says_which_notebook_to_run(two_runs):
    (two_runs[0].parent / "partial").mkdir()
    with pytest.raises(FileNotFoundError, match="notebook 05"):
        runs.metrics_table("partial")


def test_publish_copies_figures_and_writes_the_readme_block(two_runs, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_START}\nSTALE\n{report.README_END}\noutro\n")
    dest = tmp_path / "published"
    runs.publish("smoke-1", readme=readme, figures=dest)
    text = readme.read_text()
    assert "STALE" not in text and "runs/smoke-1" in text and "| joint |" in text
    assert "retrieval" in text and text.startswith("intro") and text.endswith("outro\n")
    assert (dest / "05_roc.png").exists() and (dest / "metrics_table.csv").exists()


def test_publish_into_a_second_block_writes_tables_only(two_runs, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"{report.README_START}\nSMOKE\n{report.README_END}\n"
        "<!-- paper:start -->\nSTALE\n<!-- paper:end -->\n"
    )
    dest = tmp_path / "published"
    runs.publish("cells-1", readme=readme, figures=dest, block="paper")
    text = readme.read_text()
    assert "SMOKE" in text and "STALE" not in text and "runs/cells-1" in text
    assert "make pipeline PROFILE=cells" in text and "--block paper" in text
    assert not dest.exists()  # the published figures stay those of the results block


def test_list_runs_skips_links(two_runs):
    (paths.RUNS / "latest").symlink_to("smoke-1")
    assert sorted(p.name for p in runs.list_runs()) == ["cells-1", "smoke-1"]


def test_publish_writes_the_side_by_side_and_ablation_tables(two_runs, tmp_path):
    figures = two_runs[0] / "figures"
    pd.DataFrame({"model": ["joint"], "planted method": ["run-joint"],
                  "synthetic test ROC-AUC": [0.93], "planted rank 1": [0.25]}).to_csv(
        figures / "synthetic_vs_planted.csv", index=False)  # fmt: skip
    score = {"synthetic_auc": 0.9, "planted_auc": 0.85, "planted_rank1": 0.2}
    rows = [
        {
            "variant": v,
            "kind": k,
            "changes": "",
            "input_size": 96,
            **score,
            **{f"{c}_{e}": x for c, x in score.items() for e in ("low", "high")},
        }
        for v, k in (("joint (paper)", "trained"), ("encoder 96 px", "reference"))
    ]
    pd.DataFrame(rows).to_csv(figures / "ablation.csv", index=False)  # fmt: skip
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.README_START}\nSTALE\n{report.README_END}\n")
    runs.publish("smoke-1", readme=readme, figures=tmp_path / "published")
    text = readme.read_text()
    assert "| joint | run-joint | 0.93 | 0.25 |" in text
    assert "| joint (paper) |  | 96 | 0.900 [0.90, 0.90] |" in text
    assert "- joint (paper): planted AUC 0.850 vs 0.850 (does not beat)" in text
