"""Write notebooks from cell lists (keeps them stripped). Usage: python .dev/nbbuild.py"""
import nbformat as nbf
from pathlib import Path

NB = Path(__file__).resolve().parent.parent / "notebooks"


def write(name, cells):
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
    nbf.write(nb, NB / f"{name}.ipynb")


import importlib.util, sys
for f in sorted((Path(__file__).parent / "nbs").glob("*.py")):
    spec = importlib.util.spec_from_file_location(f.stem, f)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    write(mod.NAME, mod.CELLS)
    print("wrote", mod.NAME)
