"""The pipeline entry point plans runs from profiles and refuses undeclared parameters."""

import nbformat
import pytest
import yaml

from bfutils import paths, pipeline


def test_notebooks_are_numbered_in_run_order():
    names = [nb.name for nb in pipeline.notebook_list()]
    assert names == sorted(names) and names[0].startswith("01_") and names[1].startswith("02_")


@pytest.mark.parametrize("profile", ["smoke", "cells", "paper", "full"])
def test_shipped_profiles_only_use_declared_parameters(profile):
    runs = pipeline.plan_runs(pipeline.load_profile(profile), pipeline.notebook_list())
    assert [label for _, _, label in runs][:2] == ["01_prepare_data", "02_make_pairs"]


def test_undeclared_parameter_is_refused(tmp_path):
    prof = tmp_path / "bad.yaml"
    prof.write_text(yaml.safe_dump({"notebooks": {"01_prepare_data": {"imagesize": 64}}}))
    with pytest.raises(SystemExit, match="does not declare parameter.*imagesize"):
        pipeline.plan_runs(pipeline.load_profile(str(prof)), pipeline.notebook_list())


def test_common_parameter_nobody_declares_is_refused(tmp_path):
    prof = tmp_path / "bad.yaml"
    prof.write_text(yaml.safe_dump({"common": {"sed": 1}}))
    with pytest.raises(SystemExit, match="declared by no notebook"):
        pipeline.plan_runs(pipeline.load_profile(str(prof)), pipeline.notebook_list())


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(SystemExit, match="known profiles"):
        pipeline.load_profile("no-such-profile")


def test_parameters_cell_comes_first_and_is_tagged():
    import nbformat

    for nb_path in pipeline.notebook_list():
        nb = nbformat.read(nb_path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), nb_path.name
        assert nb.cells[0].cell_type == "markdown", nb_path.name
        assert not any(c.get("outputs") for c in code), f"{nb_path.name} holds outputs"
        declared = pipeline.declared_parameters(nb_path)
        assert all(p["help"] for p in declared.values()), f"{nb_path.name}: uncommented parameter"


def test_dry_run_prints_the_plan(capsys):
    assert pipeline.main(["--profile", "smoke", "--dry-run", "--only", "01"]) == 0
    assert "01_prepare_data" in capsys.readouterr().out
    assert paths.NOTEBOOKS.exists()


def test_cell_lines_name_the_notebook_cell_and_section():
    import logging

    nb = paths.NOTEBOOKS / "03_train_barlow_twins.ipynb"
    steps = pipeline.cell_steps(nb, injected=True)
    assert len(steps) == len(nbformat.read(nb, as_version=4).cells) + 1
    n = next(i for i, s in enumerate(steps, start=1) if s and s.endswith("· Train"))
    filt = pipeline._CellLines("03_train_joint", steps)
    rec = logging.LogRecord("papermill", logging.INFO, "", 0, f"Executing Cell {n}-----", (), None)
    assert filt.filter(rec)
    assert rec.getMessage().startswith("[pipeline] 03_train_joint: code cell ")
    assert rec.getMessage().endswith("· Train")
    # markdown cells and the notebooks' own printed output are not repeated on the console
    md = logging.LogRecord("papermill", logging.INFO, "", 0, "Executing Cell 1---", (), None)
    other = logging.LogRecord("papermill", logging.INFO, "", 0, "some printed table", (), None)
    assert not filt.filter(md) and not filt.filter(other)


def _tracked_changes() -> str:
    import subprocess

    cmd = ["git", "status", "--porcelain", "--untracked-files=no"]
    return subprocess.run(cmd, cwd=paths.ROOT, capture_output=True, text=True).stdout


def test_a_run_owns_its_outputs_and_shows_progress(tmp_path, monkeypatch, capfd):
    # notebook 01 end to end through papermill, on a small slice of the embedded data
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(paths, "DATA", tmp_path / "data")
    prof = tmp_path / "tiny.yaml"
    nb01 = {"max_per_source": 80, "image_size": 32}
    prof.write_text(yaml.safe_dump({"notebooks": {"01_prepare_data": nb01}}))
    before = _tracked_changes()
    out = pipeline.run(str(prof), run_name="tiny-a", only=["01"])
    assert out == tmp_path / "runs" / "tiny-a"
    for f in ("data/manifest.csv", "data/images.npz", "figures/01_counts.png",
              "figures/01_counts.csv", "01_prepare_data.ipynb", "timings.tsv",
              "params_01_prepare_data.json"):  # fmt: skip
        assert (out / f).exists(), f
    assert (tmp_path / "runs" / "latest").resolve() == out
    assert (tmp_path / "data" / "processed").resolve() == out / "data"
    assert _tracked_changes() == before, "a run changed tracked files"
    err = capfd.readouterr().err
    assert "[pipeline] 01_prepare_data: code cell 1/" in err and "· Checks" in err
    # the environment the kernels inherited is restored
    import os

    assert os.environ.get("BFUTILS_RUN_DIR") != str(out)


def test_a_rerun_of_some_notebooks_keeps_the_other_timings(tmp_path):
    path = tmp_path / "timings.tsv"
    pipeline._write_timings(
        path,
        [
            ("01_prepare_data", 13.0),
            ("03_train_barlow_twins_0_x", 9.0),
            ("03_train_barlow_twins_1_y", 8.0),
            ("07_ablation", 200.0),
        ],
    )
    pipeline._write_timings(path, [("07_ablation", 150.0), ("05_metrics_tables", 60.0)])
    lines = path.read_text().splitlines()
    assert lines[0] == "notebook\tseconds"
    assert [line.split("\t")[0] for line in lines[1:]] == [
        "01_prepare_data",
        "03_train_barlow_twins_0_x",
        "03_train_barlow_twins_1_y",
        "05_metrics_tables",
        "07_ablation",
    ]
    assert "07_ablation\t150.0" in lines
