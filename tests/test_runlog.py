"""Freeze, seed, log: parameters are validated, seeds repeat, the run record is written."""

import json
import random
import subprocess

import numpy as np
import pytest
import torch

from bfutils import paths, runlog


@pytest.fixture()
def run_dir(tmp_path, monkeypatch):
    """The run folder, its data and figures, and the download cache under tmp_path."""
    monkeypatch.setattr(paths, "RAW", tmp_path / "raw")
    monkeypatch.setenv("BFUTILS_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("BFUTILS_FIGURES", str(tmp_path / "figures"))
    return tmp_path / "run"


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


@pytest.mark.parametrize(
    ("params", "required", "match"),
    [({}, {"epochs": int}, "parameter 'epochs' is missing"),
     ({"epochs": "3"}, {"epochs": int}, "'epochs' must be int, got str"),
     ({"epochs": True}, {"epochs": int}, "'epochs' must be int, got bool"),
     ({"lr": 1}, {"lr": float}, "'lr' must be float, got int")],
)  # fmt: skip
def test_start_refuses_missing_or_mistyped_parameters(run_dir, params, required, match):
    with pytest.raises(ValueError, match=match):
        runlog.start("nb", params, required=required)
    assert not run_dir.exists()  # refused before anything is written


def test_the_same_seed_gives_the_same_draws(run_dir):
    runlog.start("nb", {"seed": 3, "device": "cpu"})
    first = _draws()
    runlog.start("nb", {"seed": 3, "device": "cpu"})
    assert _draws() == first
    runlog.start("nb", {"seed": 4, "device": "cpu"})
    assert all(a != b for a, b in zip(_draws(), first, strict=True))


def test_start_writes_params_and_environment_into_the_run_folder(run_dir):
    params = {"epochs": 2, "lr": 0.1, "device": "cpu", "seed": 0}
    run = runlog.start("03_train", params, required={"epochs": int, "lr": float})
    assert run.dir == run_dir and run.device == "cpu" and run.params == params
    assert run.path("model.pt") == run_dir / "model.pt"
    record = json.loads((run_dir / "params_03_train.json").read_text())
    assert record["notebook"] == "03_train" and record["params"] == params
    assert record["device"] == "cpu" and record["python"].count(".") == 2
    assert record["packages"]["torch"] == torch.__version__.split("+")[0]  # no local tag
    assert set(record["packages"]) == set(runlog.PACKAGES)
    assert record["git_commit"] == runlog.git_commit() and record["time_utc"].endswith("+00:00")
    assert (run_dir.parent / "figures").is_dir() and (run_dir.parent / "raw").is_dir()


def test_missing_packages_and_git_are_recorded_not_raised(monkeypatch):
    monkeypatch.setattr(runlog, "PACKAGES", ("numpy", "no-such-package-bfutils"))
    env = runlog.environment()
    assert env["packages"] == {"numpy": np.__version__, "no-such-package-bfutils": None}

    def no_git(*args, **kwargs):
        raise subprocess.CalledProcessError(128, "git")

    monkeypatch.setattr(runlog.subprocess, "run", no_git)
    assert runlog.git_commit() == "unknown"


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runlog.resolve_device("auto") == "cpu" and runlog.resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        runlog.resolve_device("cuda:1")
    with pytest.raises(ValueError, match="MPS is not available"):
        runlog.resolve_device("mps")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        runlog.resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runlog.resolve_device("auto") == "cuda" and runlog.resolve_device("cuda:1") == "cuda:1"
