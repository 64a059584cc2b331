# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Find reused panels
#
# **Purpose.** Screen a folder of figure panels for reuse: every pair where one panel was
# derived from another (copied, cropped, rotated, flipped, re-compressed, re-contrasted, or cut
# out of a larger image), most suspicious first, with the matched regions outlined.
#
# **Inputs.** `panels_dir`: a folder of image files. Empty (the default) makes a small demo
# folder in the run folder from the embedded images, with planted copies, so the notebook runs
# on a fresh clone. `reference_dir`: an optional library of published images to compare
# against. `detector`: a detector file; empty uses the shipped default (SSCD copy descriptors,
# perceptual hashes and grey thumbnails in 8 orientations, a keypoint shortlist that ignores
# the annotation glyphs panels share, and SIFT and XFeat keypoint verification, calibrated on 1,090
# figure-like panels with planted reuse made from the embedded images, DSB 2018 and BCCD, none
# of them an image of the planted benchmark;
# `python -m bfutils.calibrate` rebuilds it).
#
# **Outputs** (in the run folder, `runs/interactive/` unless the pipeline names another):
# `find/report.html` (self-contained: flagged pairs side by side, near misses, skipped files),
# `find/pairs.csv` (a, b, score, pair score, inliers, transform, box in a, box in b) and
# `find/skipped.csv` (file, reason), and the run record `params_06_find_duplicates.json`.
#
# The same runs from the command line:
# `python -m bfutils.find PANELS [--reference LIBRARY] [--detector FILE] [--out DIR]`.

# %% tags=["parameters"]
panels_dir: str = ""  # folder of panels; empty: a demo folder with planted copies is made
reference_dir: str = ""  # optional folder of reference images (queries vs library)
detector: str = ""  # detector file; empty: the shipped default
demo_sources: int = 8  # demo folder only: sources drawn (each gives a copy and distractors)
k: int = 10  # candidates verified per panel
self_check: bool = True  # also look for repeated regions inside one image
seed: int = 1  # seeds the demo folder

# %%
from bfutils import runlog

run = runlog.start(
    "06_find_duplicates",
    dict(
        panels_dir=panels_dir,
        reference_dir=reference_dir,
        detector=detector,
        demo_sources=demo_sources,
        k=k,
        self_check=self_check,
        seed=seed,
    ),
    required={"panels_dir": str, "detector": str, "k": int, "seed": int},
)
run.dir

# %% [markdown]
# ## The panels
# Without `panels_dir`, planted copies of embedded images (one alteration family each, or a
# partial crop) are written among distinct images; `truth` lists the planted pairs.

# %%
from pathlib import Path

from bfutils import calibrate

truth = None
folder = Path(panels_dir) if panels_dir else run.dir / "find_demo_panels"
if not panels_dir:
    truth = calibrate.write_demo_panels(folder, n_sources=demo_sources, seed=seed)
sorted(p.name for p in folder.iterdir())[:10]

# %% [markdown]
# ## Embed, shortlist, verify, score
# Every image is embedded once (cached by content hash), each takes its nearest candidates
# from faiss indexes of copy descriptors, perceptual hashes, grey thumbnails (and, for a
# detector with an encoder, whole-image and sub-region descriptors) and shared keypoints, and
# only those candidates are matched with keypoints. The score is symmetric in
# the two images.

# %%
from bfutils import find

out = run.dir / "find"
pairs = find.find(
    folder,
    reference=reference_dir or None,
    detector_file=detector or None,
    out=out,
    k=k,
    self_check=self_check,
    cache=run.dir / "find_cache",
)
pairs[["a", "b", "score", "flagged", "inliers", "transform", "box_a", "box_b"]].head(10)

# %% [markdown]
# ## Did it find the planted copies?
# For the demo folder: which planted pairs were flagged, and where each ranked.

# %%
if truth is not None:
    flagged = {frozenset(p) for p in pairs[pairs["flagged"]][["a", "b"]].itertuples(index=False)}
    truth["found"] = [frozenset(p) in flagged for p in truth[["a", "b"]].itertuples(index=False)]
    print(
        f"{truth['found'].sum()} of {len(truth)} planted copies flagged; "
        f"{len(flagged) - truth['found'].sum()} other pairs flagged"
    )
truth

# %% [markdown]
# ## Checks
# These assertions are what makes `pytest --nbval` a test of this notebook.

# %%
import pandas as pd

assert (out / "report.html").exists() and (out / "pairs.csv").exists()
assert (out / "skipped.csv").exists()
written = pd.read_csv(out / "pairs.csv")
assert len(written) == len(pairs) and written["score"].between(0, 1).all()
assert pairs["score"].is_monotonic_decreasing
if truth is not None:
    assert truth["found"].mean() >= 0.5, truth
print(f"{int(pairs['flagged'].sum())} flagged pairs; report: {out / 'report.html'}")

# %% [markdown]
# Open `find/report.html` in a browser. `python -m bfutils.find`
# runs the same on any folder.
