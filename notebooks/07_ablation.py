# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Ablation: does each change make the paper's pair model better?
#
# **Purpose.** Train variants of the joint model (the paper's method) with the same budget and
# seed, and score each on **validation** only: the run's synthetic validation pairs and a
# planted figure validation set (panels made as the planted figure benchmark makes them, from
# images that neither the evaluation benchmark nor this run's training split uses). The
# untrained encoder's cosine at each input size is the reference a trained model must beat.
# Intervals are 95% bootstrap intervals (see `bfutils.ablation`). Early stopping picks each
# variant's epoch on the same synthetic validation pairs, so their score flatters the trained
# variants against the untrained reference; the planted validation set plays no part in
# training.
#
# **Inputs.** `data/` of this run (notebooks 01-02); `../shared/data` for DSB 2018 and BCCD
# panels when present (without it the planted set is made from the embedded images, and says
# so). **Outputs** (run folder). `figures/ablation.csv`, `figures/07_ablation.png` (with its CSV).

# %% tags=["parameters"]
variants: str = "joint (paper),cosine residual"  # comma-separated names of bfutils.ablation.VARIANTS, or "all"
epochs: int = 2  # epochs of every variant (the profiles set the run's own training budget)
steps_per_epoch: int = 6  # optimiser steps per epoch
batch_size: int = 64  # pairs (and view pairs) per step
cache_views: int = 3  # altered views per training image (cached encoder features)
patience: int = 2  # epochs without a better validation ROC-AUC before training stops
n_val_panels: int = 160  # planted validation set: panels in all
n_val_planted: int = 40  # ... of which planted reuses (query and source)
n_boot: int = 200  # bootstrap resamples for the 95% intervals
device: str = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
seed: int = 0  # seeds the planted validation set, weights, views and training pairs

# %%
from bfutils import ablation, pairs, paths, plots, prepare, runlog, train

run = runlog.start(
    "07_ablation",
    dict(variants=variants, epochs=epochs, steps_per_epoch=steps_per_epoch,
         batch_size=batch_size, cache_views=cache_views, patience=patience,
         n_val_panels=n_val_panels, n_val_planted=n_val_planted, n_boot=n_boot,
         device=device, seed=seed),
    required={"variants": str, "epochs": int, "n_boot": int, "seed": int},
)
chosen = ablation.select(variants)
manifest, images = prepare.load()
eval_sets = {"val": pairs.load_pairs(paths.PROCESSED, "val")}
base = train.TrainConfig(
    schedule="joint", epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
    cache_views=cache_views, patience=patience, device=run.device, seed=seed,
)
validation = ablation.planted_validation(manifest, n_panels=n_val_panels,
                                         n_planted=n_val_planted, seed=seed + 1)
print(f"planted validation: {len(validation['images'])} panels, {len(validation['truth'])} planted")
for note in validation["notes"]:
    print("note:", note)
list(chosen)

# %% [markdown]
# ## Train and score every variant

# %%
result = ablation.run(base, manifest, images, eval_sets, validation, variants=chosen, n_boot=n_boot)
result.to_csv(paths.FIGURES / "ablation.csv", index=False)
plots.save(ablation.figure(result), "07_ablation", result)
ablation.table(result)

# %% [markdown]
# ## Checks

# %%
assert set(chosen) <= set(result["variant"])
assert (result["kind"] == "reference").sum() == result["input_size"].nunique()
scores = result[["synthetic_auc", "planted_auc", "planted_rank1"]]
assert scores.apply(lambda c: c.between(0, 1)).all().all()
for col in ("synthetic_auc", "planted_auc", "planted_rank1"):
    assert (result[f"{col}_low"] <= result[col] + 1e-9).all() and (result[col] <= result[f"{col}_high"] + 1e-9).all()
print(ablation.verdict(result))

# %% [markdown]
# The variants the profiles train by default (notebook 03's `figure_pairs` and `residual`) are
# those that helped here; the README's ablation table comes from `make pipeline PROFILE=paper`.
# This is the last notebook.
