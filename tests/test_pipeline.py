"""The pipeline entry point plans runs from profiles and refuses undeclared parameters."""

import pytest
import yaml

from bfutils import paths, pipeline


def test_notebooks_are_numbered_in_run_order():
    names = [nb.name for nb in pipeline.notebook_list()]
    assert names == sorted(names) and names[0].startswith("01_") and names[1].startswith("02_")


@pytest.mark.parametrize("profile", ["smoke", "cells", "full"])
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
