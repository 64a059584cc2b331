"""ruff on the package, the tests, the benchmarks and the notebooks' .py twins (as `make lint`)."""

import subprocess
import sys

from bfutils import paths

TARGETS = ["bfutils", "tests", "benchmarks", "notebooks"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ruff", *args]
    return subprocess.run(cmd, cwd=paths.ROOT, capture_output=True, text=True)


def test_ruff_check_passes_everywhere_notebooks_included():
    done = _ruff("check", *TARGETS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_applied_to_library_tests_and_benchmarks():
    # notebooks keep their hand-wrapped call layout; their code is still linted above
    done = _ruff("format", "--check", "bfutils", "tests", "benchmarks")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_sees_the_notebook_twins():
    # a lint error planted in a copy of a notebook twin is reported: notebooks are not skipped
    twin = (paths.NOTEBOOKS / "01_prepare_data.py").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--stdin-filename", "notebooks/x.py", "-"],
        input=twin + "\nimport os\n",
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "F401" in done.stdout
