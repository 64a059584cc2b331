# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Baselines and the fused model
#
# **Purpose.** A claim that the pair model "outperforms CLIP, SimCLR and Barlow Twins" is only worth
# the baselines it is held against. Every baseline here is scored on **the identical validation
# and test pairs** of notebook 02, in the same run as notebook 03:
#
# | model | what it is |
# |---|---|
# | `barlow_twins` | encoder + projector trained with the Barlow Twins loss only; cosine of embeddings (the paper's baseline) |
# | `simclr` | the same backbone, augmentations and budget with NT-Xent; cosine |
# | `bce_only` | the Siamese fusion head trained with BCE only: what the Barlow Twins term adds |
# | `imagenet_cnn` | ImageNet EfficientNet-Lite0 embeddings, cosine (imagededup's CNN method) |
# | `clip` | open_clip image tower, cosine; *not run* when no pretrained weights can be loaded |
# | `phash`, `dhash`, `whash`, `ahash` | perceptual hashes through imagededup; score = 1 − Hamming/64 |
# | `keypoints` | SIFT, ratio test, RANSAC similarity fit, mirrored image tried too; score = inliers |
# | `fused` | logistic regression on the pair model's score and the finder's symmetric evidence (keypoint fit, copy descriptor, hashes, thumbnails), fitted on validation pairs only |
#
# **Inputs** (run folder). `data/`, and `predictions_<fuse_with>.csv` from notebook 03 in the run folder.
# **Outputs** (run folder): `predictions_<model>.csv` for every model that ran, `model_<name>.pt`
# for the learned baselines, `keypoint_details.csv`, `verify_details.csv`, `baseline_status.csv`
# (status and seconds per model), `fused_coefficients.csv`, `fused_model.json`, `fused_degrees.csv`.

# %% tags=["parameters"]
encoder: str = "efficientnet_lite0"  # same backbone as notebook 03
pretrained: str = "lite0-offline"  # encoder weights, as in notebook 03
freeze_backbone: bool = True  # as in notebook 03
input_size: int = 96  # model input side in px
epochs: int = 3  # epochs per phase: the same budget as notebook 03
steps_per_epoch: int = 8  # optimiser steps per epoch
batch_size: int = 64  # pairs or view pairs per step
lr_start: float = 0.001  # AdamW learning rate at the start
lr_end: float = 0.0003  # learning rate at the end of the cosine decay
cache_views: int = 3  # altered views per training image when features are cached
figure_pairs: int = 0  # figure-realistic training pairs per image, as in notebook 03 (the same data for every trained model)
residual: bool = False  # encoder cosine into the pair head of bce_only, as in notebook 03
clip_model: str = "ViT-B-32"  # open_clip architecture
clip_pretrained: str = "laion2b_s34b_b79k"  # open_clip pretrained tag or a local checkpoint path
hash_methods: str = "phash,dhash,whash,ahash"  # imagededup hash methods, comma-separated
keypoint_method: str = "sift"  # sift or orb
n_jobs: int = 2  # processes for keypoint matching
fuse_with: str = "joint"  # the pair model whose score the fused model combines with keypoints
device: str = "auto"  # auto, cpu, cuda, mps
seed: int = 0  # seeds weights, views and training pairs

# %%
import pandas as pd

from bfutils import baselines, classic, pairs, paths, prepare, registry, results, runlog, train

run = runlog.start(
    "04_baselines",
    dict(encoder=encoder, pretrained=pretrained, freeze_backbone=freeze_backbone,
         input_size=input_size, epochs=epochs, steps_per_epoch=steps_per_epoch,
         batch_size=batch_size, lr_start=lr_start, lr_end=lr_end, cache_views=cache_views,
         figure_pairs=figure_pairs, residual=residual, clip_model=clip_model, clip_pretrained=clip_pretrained, hash_methods=hash_methods,
         keypoint_method=keypoint_method, n_jobs=n_jobs, fuse_with=fuse_with, device=device,
         seed=seed),
    required={"encoder": str, "epochs": int, "n_jobs": int, "fuse_with": str, "seed": int},
)
manifest, images = prepare.load()
eval_sets = {s: pairs.load_pairs(paths.PROCESSED, s) for s in ("val", "test")}
cfg = train.TrainConfig(
    encoder=encoder, pretrained=pretrained or None, freeze_backbone=freeze_backbone,
    input_size=input_size, epochs=epochs, steps_per_epoch=steps_per_epoch,
    batch_size=batch_size, lr_start=lr_start, lr_end=lr_end, cache_views=cache_views,
    figure_pairs=figure_pairs, residual=residual, device=run.device, seed=seed,
)
status = []  # one row per model: model, status, seconds

# %% [markdown]
# ## Learned baselines: plain Barlow Twins, SimCLR, BCE-only head
# Same encoder, same cached views, same number of steps as the pair model of notebook 03.

# %%
data = None
for name in registry.LEARNED_BASELINES:
    (preds, hist, data), sec = baselines.timed(
        baselines.learned, name, cfg, manifest, images, eval_sets, data=data,
        save_to=run.path(f"model_{name}.pt"))
    results.write_predictions(preds, run.dir, name)
    hist.to_csv(run.path(f"history_{name}.csv"), index=False)
    status.append({"model": name, "status": "ok", "seconds": sec})
if isinstance(data, train.FeatureData):
    ref = train.reference_predictions(data, eval_sets, name="imagenet_cnn")
    results.write_predictions(ref, run.dir, "imagenet_cnn")
    status.append({"model": "imagenet_cnn", "status": "ok", "seconds": 0.0})
pd.DataFrame(status)

# %% [markdown]
# ## CLIP (open_clip)
# Random weights are never reported as CLIP: when the pretrained weights cannot be loaded (offline), the row says so.

# %%
try:
    preds, sec = baselines.timed(baselines.clip, eval_sets, clip_model, clip_pretrained, run.device)
    results.write_predictions(preds, run.dir, "clip")
    status.append({"model": "clip", "status": "ok", "seconds": sec})
except classic.BaselineUnavailable as err:
    status.append({"model": "clip", "status": f"not run: {err}", "seconds": 0.0})
status[-1]

# %% [markdown]
# ## Perceptual hashes (imagededup)

# %%
for method in [m.strip() for m in hash_methods.split(",") if m.strip()]:
    preds, sec = baselines.timed(baselines.hashes, eval_sets, method)
    results.write_predictions(preds, run.dir, method)
    status.append({"model": method, "status": "ok", "seconds": sec})

# %% [markdown]
# ## Keypoint matching with geometric verification (OpenCV)

# %%
(kp_preds, kp_details), sec = baselines.timed(
    baselines.keypoints, eval_sets, method=keypoint_method, n_jobs=n_jobs)
results.write_predictions(kp_preds, run.dir, "keypoints")
kp_details.to_csv(run.path("keypoint_details.csv"), index=False)
status.append({"model": "keypoints", "status": "ok", "seconds": sec})
print(f"{1000 * kp_details['seconds'].mean():.1f} ms per pair (one process)")

# %% [markdown]
# ## The fused model
# Logistic regression (degree 2: the inputs, their squares and pairwise products; `baselines.FUSE_DEGREE`) on the pair model's logit and the finder's evidence for the pair (`baselines.verify_evidence`, the shipped detector's descriptors: one-to-one keypoint matches, a plausible fit and its a-contrario evidence, the SSCD copy cosine, perceptual-hash and grey-thumbnail similarity; each symmetric in the two images), **fitted on validation pairs only**; its validation scores are cross-fitted (5 folds) so the validation threshold is not chosen on fitted scores. Saved as plain JSON (`fused_model.json`).

# %%
vf_details, vf_sec = baselines.timed(baselines.verify_evidence, eval_sets)
vf_details.to_csv(run.path("verify_details.csv"), index=False)
print(f"{1000 * vf_details['seconds'].mean():.1f} ms per pair (describe + verify)")
pair_pred = results.read_predictions(run.dir)[fuse_with]
(fused_preds, coef, fused_model), fit_sec = baselines.timed(
    baselines.fused, pair_pred, vf_details, seed=seed)
results.write_predictions(fused_preds, run.dir, "fused")
baselines.save_fused(fused_model, fuse_with=fuse_with, path=run.path("fused_model.json"))
coef_table = pd.Series(coef, name="coefficient").rename_axis("term").reset_index()
coef_table.to_csv(run.path("fused_coefficients.csv"), index=False)
# its cost is the verification evidence plus the fit (the pair model's cost is in notebook 03)
status.append({"model": "fused", "status": "ok", "seconds": vf_sec + fit_sec})
pd.DataFrame(status).to_csv(run.path("baseline_status.csv"), index=False)
# what chose the degree (baselines.FUSE_DEGREE): cross-fitted validation ROC-AUC per degree
degrees = baselines.compare_degrees(pair_pred, vf_details, seed=seed)
degrees.to_csv(run.path("fused_degrees.csv"), index=False)
print(degrees.round(4).to_string(index=False))
# the largest terms (on standardised inputs)
coef_table.reindex(coef_table["coefficient"].abs().sort_values(ascending=False).index).head(12).round(3)

# %% [markdown]
# ## A first look (the full table with intervals is notebook 05)

# %%
preds = results.read_predictions(run.dir)
quick = pd.DataFrame([results.summary(p, m, n_boot=50, seed=seed) for m, p in preds.items()])
quick.set_index("model")[["roc_auc", "roc_auc_easy", "roc_auc_hard", "f1"]].sort_values("roc_auc").round(3)

# %% [markdown]
# ## Checks

# %%
import numpy as np

n_test = len(eval_sets["test"][0])
for name in ["barlow_twins", "simclr", "bce_only", "phash", "keypoints", "fused"]:
    p = preds[name]
    assert (p["split"] == "test").sum() == n_test and np.isfinite(p["score"]).all(), name
assert {"clip"} <= {s["model"] for s in status}
assert all(s["status"] == "ok" or s["status"].startswith("not run") for s in status)

# %% [markdown]
# Next: [`05_metrics_tables.ipynb`](05_metrics_tables.ipynb) builds the tables and figures from these prediction files.
