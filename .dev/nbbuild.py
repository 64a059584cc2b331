"""Write the notebooks from their cell lists in .dev/nbs/ (stripped, stable cell ids).

The notebooks are edited as plain Python (``.dev/nbs/nNN.py``: one list of cells each), which
gives readable diffs; ``python .dev/nbbuild.py`` rewrites ``notebooks/*.ipynb`` and
``tests/test_notebooks.py`` checks that the two are in sync.
"""
import nbformat as nbf
from pathlib import Path

NB = Path(__file__).resolve().parent.parent / "notebooks"


def build(name, cells):
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    out = []
    for kind, src, *tags in cells:
        c = nbf.v4.new_markdown_cell(src.strip()) if kind == "md" else nbf.v4.new_code_cell(src.strip())
        if tags:
            c.metadata["tags"] = tags
        out.append(c)
    nb.cells = out
    for k, c in enumerate(nb.cells):
        c["id"] = f"{name[:2]}-{k:02d}"
    return nb


def sources():
    """``(name, cells)`` of every notebook source in .dev/nbs."""
    import importlib.util

    for f in sorted((Path(__file__).parent / "nbs").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f.stem, f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod.NAME, mod.CELLS


if __name__ == "__main__":
    for name, cells in sources():
        nbf.write(build(name, cells), NB / f"{name}.ipynb")
        print("wrote", name)
