"""The committed notebooks match their sources in .dev/nbs and carry no outputs."""

import importlib.util

import nbformat

from bfutils import paths


def _builder():
    spec = importlib.util.spec_from_file_location("nbbuild", paths.ROOT / ".dev" / "nbbuild.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_notebooks_are_in_sync_with_their_sources():
    nbb = _builder()
    names = []
    for name, cells in nbb.sources():
        names.append(name)
        built = nbb.build(name, cells)
        committed = nbformat.read(paths.NOTEBOOKS / f"{name}.ipynb", as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in built.cells], (
            f"{name}.ipynb differs from .dev/nbs: run python .dev/nbbuild.py"
        )
    assert sorted(p.stem for p in paths.NOTEBOOKS.glob("*.ipynb")) == sorted(names)


def test_notebooks_end_with_checks_and_a_pointer():
    for nb_path in sorted(paths.NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "assert" in code[-1].source or "assert" in code[-2].source, nb_path.name
        assert nb.cells[-1].cell_type == "markdown", nb_path.name
        assert all(not c.get("outputs") and not c.get("execution_count") for c in code)
