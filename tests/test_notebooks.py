"""Notebooks: each .ipynb has its jupytext percent-format .py twin in sync, and carries no outputs.

Editing in JupyterLab (jupytext installed, ``jupytext.toml`` at the root) saves both files; on the
command line ``make sync`` brings a pair back in sync after either file was edited.
"""

import subprocess
import sys

import jupytext
import nbformat
import pytest

from bfutils import paths

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
FIX = "run `make sync` (jupytext --sync + nbstripout) and commit both files"


def _cells(nb) -> list[tuple]:
    """What a pair must agree on: the kind, source and tags of every cell."""
    return [(c.cell_type, c.source, tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def test_every_notebook_has_its_py_twin_and_no_twin_is_orphaned():
    assert NOTEBOOKS, "no notebooks found"
    py = sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    assert [p.stem for p in py] == [p.stem for p in NOTEBOOKS], FIX


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_py_twin_are_in_sync(ipynb):
    committed = nbformat.read(ipynb, as_version=4)
    twin = jupytext.read(ipynb.with_suffix(".py"))
    assert _cells(twin) == _cells(committed), f"{ipynb.name} and its .py twin differ: {FIX}"


def test_sync_check_catches_an_edit(tmp_path):
    # the comparison above must see a one-character edit made on either side
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    twin = jupytext.reads(jupytext.writes(nb, fmt="py:percent"), fmt="py:percent")
    assert _cells(twin) == _cells(nb)
    twin.cells[-1].source += "!"
    assert _cells(twin) != _cells(nb)


def test_notebooks_are_stripped():
    # nbstripout's own check: no outputs, no execution counts, sequential cell ids
    cmd = [sys.executable, "-m", "nbstripout", "--verify", *map(str, NOTEBOOKS)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}: {FIX}"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(ipynb):
    # parameters cell first, a closing cell of assertions, a markdown pointer last
    nb = nbformat.read(ipynb, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown", "the first cell states purpose, inputs, outputs"
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell is parameters"
    assert "assert" in code[-1].source or "assert" in code[-2].source
    assert nb.cells[-1].cell_type == "markdown"


def test_saving_in_jupyterlab_updates_the_py_twin(tmp_path):
    # JupyterLab saves through the server's contents manager, which jupytext's server extension
    # (enabled in .venv) replaces; jupytext.toml at the root pairs every notebook.
    import asyncio
    import shutil

    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class

    shutil.copy(paths.ROOT / "jupytext.toml", tmp_path)
    (tmp_path / "notebooks").mkdir()
    for ext in (".ipynb", ".py"):
        shutil.copy(NOTEBOOKS[1].with_suffix(ext), tmp_path / "notebooks")
    name = f"notebooks/{NOTEBOOKS[1].name}"
    manager = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)
    cm = manager(root_dir=str(tmp_path))

    async def edit_and_save():
        model = await cm.get(name)
        model["content"].cells[-1].source += "\n\nEdited in JupyterLab."
        await cm.save(model, name)

    asyncio.run(edit_and_save())
    twin = (tmp_path / name).with_suffix(".py").read_text()
    assert "# Edited in JupyterLab." in twin
