"""Paths come from the package file or environment variables, never the working directory."""

import importlib

import pytest

from bfutils import paths

ENV = ("BFUTILS_DATA", "BFUTILS_FIGURES", "BFUTILS_RUNS", "BFUTILS_RUN_DIR")


@pytest.fixture()
def clean_env(monkeypatch):
    """No BFUTILS_* overrides (``make test`` sets some); the module is restored afterwards."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    monkeypatch.undo()
    importlib.reload(paths)


def test_paths_do_not_depend_on_the_working_directory(tmp_path, clean_env):
    clean_env.chdir(tmp_path)
    fresh = importlib.reload(paths)
    assert fresh.ROOT == fresh.Path(__file__).resolve().parent.parent
    assert fresh.PROCESSED == fresh.ROOT / "data" / "processed"


def test_environment_overrides_relative_to_root(tmp_path, clean_env):
    clean_env.setenv("BFUTILS_FIGURES", "runs/x/figures")
    clean_env.setenv("BFUTILS_RUN_DIR", str(tmp_path / "run"))
    fresh = importlib.reload(paths)
    assert fresh.FIGURES == fresh.ROOT / "runs" / "x" / "figures"
    assert fresh.run_dir() == tmp_path / "run" and (tmp_path / "run").is_dir()


def test_shared_data_is_beside_the_project():
    assert paths.shared("dsb2018").parent == paths.SHARED_DATA
