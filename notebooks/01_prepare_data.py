# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Prepare data
#
# **Purpose.** Load real biological images from one or more sources, give every image a
# *group* (the unit that must never straddle two splits), and split the groups into
# train / validation / test.
#
# **Inputs.** The source named by `sources`: by default `embedded`, real images that ship inside
# installed packages (works offline on a fresh install); `haxby`, `folder`, `dsb2018`, `bccd`
# for users who bring or download data (`params/cells.yaml` uses DSB 2018 + BCCD).
#
# **Outputs** (in the run folder, `runs/interactive/` unless the pipeline names another):
# `data/manifest.csv` (one row per image: `image_id, group, modality,
# source, split` and the acquisition coordinates), `data/images.npz` (the pixels,
# RGB uint8 at `image_size`), figures `figures/01_counts.png` and `figures/01_gallery.png`
# (each with its data as CSV), and the run record `params_01_prepare_data.json`.
#
# ### Why groups, and why gaps
# Two images that share pixels or anatomy must not sit in different splits, or a model is
# tested on near-copies of its training images. In the embedded set:
#
# * **MNI152 templates** (T1, grey matter, white matter; 2 mm voxels) are cut into 2-D slices
#   on the three axes. A group is a *slab* of neighbouring slices on one axis **together with the
#   same slab in the T1, grey- and white-matter volumes** (the three show the same anatomy).
#   Neighbouring slabs would touch (their border slices are 2 mm apart), so slices are dropped
#   between slabs: slices of two different groups are always at least 6 mm apart, farther than
#   the hardest within-group negative (2 mm).
#   Slices on *different* axes of one volume cross along a line of voxels; they share one row of
#   pixels, not an image, and are treated as distinct.
# * **The EPI fMRI volume** (nibabel's example, two time points) is grouped the same way; the two
#   time points of a slice are consecutive frames of one acquisition and share a group.
# * **scikit-image's microscopy, immunohistochemistry and retina images** are cut into
#   non-overlapping tiles; a group is a 2 x 2 block of tiles, and a band of tiles is left out
#   between blocks so that tiles of different groups never touch.

# %% tags=["parameters"]
sources: str = "embedded"  # comma-separated: embedded, haxby, folder, dsb2018, bccd
data_root: str = ""  # one root per source (comma-separated); empty: ../shared/data copy, else download
image_size: int = 160  # stored square image size in px (models resize further)
split: str = "70/10/20"  # train/val/test shares of groups ("80/20" carves val from train)
max_per_source: int = 200  # cap on images per source, whole groups kept; 0 keeps all (profiles do)
on_error: str = "raise"  # bad image files: "raise" or "skip" (skips are logged with the reason)
seed: int = 0  # seeds the split

# %%
from bfutils import plots, prepare, runlog

run = runlog.start(
    "01_prepare_data",
    dict(sources=sources, data_root=data_root, image_size=image_size, split=split,
         max_per_source=max_per_source, on_error=on_error, seed=seed),
    required={"sources": str, "data_root": str, "image_size": int, "split": str, "seed": int},
)
run.dir

# %% [markdown]
# ## Load the sources and split by group

# %%
manifest, images = prepare.build(
    sources=sources, data_root=data_root, image_size=image_size, split=split, seed=seed,
    on_error=on_error, max_per_source=max_per_source,
)
prepare.save(manifest, images, params=run.params)
manifest.head()

# %% [markdown]
# ## Counts per modality and split
# The split is stratified by the modalities of a group, so every split holds every kind of image.

# %%
counts = prepare.split_counts(manifest)
fig = plots.counts(counts, x="modality", y="images", hue="split", title="Images per modality and split")
plots.save(fig, "01_counts", counts)
counts.pivot(index="modality", columns="split", values="images")

# %% [markdown]
# ## A sample of every source

# %%
fig, shown = plots.gallery(manifest, images, per_source=8, seed=seed)
plots.save(fig, "01_gallery", shown)

# %% [markdown]
# ## Checks
# These assertions are what makes `pytest --nbval` a test of this notebook.

# %%
from bfutils import pairs, paths

pairs.check_disjoint(manifest)
assert (paths.PROCESSED / "manifest.csv").exists() and (paths.PROCESSED / "images.npz").exists()
assert set(prepare.MANIFEST_COLUMNS) <= set(manifest.columns)
assert images.shape == (len(manifest), image_size, image_size, 3) and images.dtype == "uint8"
assert manifest["image_id"].is_unique
assert set(manifest["split"]) == {"train", "val", "test"}
if sources == "embedded" and not max_per_source:
    assert len(manifest) >= 500 and manifest["modality"].nunique() >= 3
print(len(manifest), "images,", manifest["modality"].nunique(), "modalities,",
      manifest["group"].nunique(), "groups")

# %% [markdown]
# Next: [`02_make_pairs.ipynb`](02_make_pairs.ipynb) draws labelled pairs from these splits.
