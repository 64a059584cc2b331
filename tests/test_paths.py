"""Paths come from the package file or environment variables, never the working directory."""

import importlib

from bfutils import paths


def test_paths_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fresh = importlib.reload(paths)
    assert fresh.ROOT == fresh.Path(__file__).resolve().parent.parent
    assert fresh.PROCESSED == fresh.ROOT / "data" / "processed"


def test_environment_overrides_relative_to_root(monkeypatch, tmp_path):
    monkeypatch.setenv("BFUTILS_FIGURES", "runs/x/figures")
    monkeypatch.setenv("BFUTILS_RUN_DIR", str(tmp_path / "run"))
    fresh = importlib.reload(paths)
    assert fresh.FIGURES == fresh.ROOT / "runs" / "x" / "figures"
    assert fresh.run_dir() == tmp_path / "run" and (tmp_path / "run").is_dir()
    monkeypatch.delenv("BFUTILS_FIGURES")
    monkeypatch.delenv("BFUTILS_RUN_DIR")
    importlib.reload(paths)


def test_shared_data_is_beside_the_project():
    assert paths.shared("dsb2018").parent == paths.SHARED_DATA
