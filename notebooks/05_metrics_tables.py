# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Metrics tables and figures
#
# **Purpose.** Build every table and figure from the prediction files of this run (never typed):
# thresholds are chosen on validation and applied unchanged to test; ROC-AUC comes with a
# bootstrap 95% interval; the breakdowns show where each model fails (hard vs easy negatives,
# alteration families, hard-negative kinds), and a copy-detection retrieval table (top-k, micro
# AP as in DISC21) scores the models as a search tool.
#
# **Inputs.** `predictions_*.csv`, `baseline_status.csv`, `model_*.pt` in the run folder;
# `data/pairs_test.npz` for the error gallery.
# **Outputs** (run folder). `figures/metrics_table.{csv,md,tex}`, `figures/retrieval_table.csv`, figures
# `05_roc`, `05_scores`, `05_recall_by_family`, `05_auc_by_detail`, `05_fpr_by_kind`,
# `05_hardest` (each PNG with its CSV). `make results RUN=<run>` (or
# `python -m bfutils.runs publish <run>`) copies them to `figures/` and writes the README's
# results block; nothing here changes a tracked file.

# %% tags=["parameters"]
n_boot: int = 200  # bootstrap resamples for the 95% intervals
gallery_model: str = "fused"  # whose hardest errors are shown
retrieval: bool = True  # also run the copy-detection retrieval evaluation
planted_panels: int = 60  # panels of the planted figure benchmark scored by this run's models (1000: the README's; 0: skip)
planted_methods: str = "run-joint,run-sequential,run-encoder,imagededup-phash"  # comma-separated bfutils.planted_methods.METHODS
seed: int = 0  # bootstrap and retrieval seed

# %%
import pandas as pd

from bfutils import pairs, paths, plots, prepare, registry, report, results, runlog

run = runlog.start(
    "05_metrics_tables",
    dict(n_boot=n_boot, gallery_model=gallery_model, retrieval=retrieval,
         planted_panels=planted_panels, planted_methods=planted_methods, seed=seed),
    required={"n_boot": int, "gallery_model": str, "seed": int},
)
preds = results.read_predictions(run.dir)
status_path = run.path("baseline_status.csv")
status = pd.read_csv(status_path) if status_path.exists() else None
sorted(preds)

# %% [markdown]
# ## The main table
# One row per model; `status` says why a model did not run. Threshold from validation; everything else on test.

# %%
table = report.main_table(preds, status, n_boot=n_boot, seed=seed)
report.write_tables(table)
thr = report.thresholds(table)
report.metrics.format_table(table)

# %% [markdown]
# ## ROC curves of all models on the test pairs

# %%
curves = report.roc_data(preds)
plots.save(plots.roc_curves(curves), "05_roc", curves)

# %% [markdown]
# ## Score distributions by label and negative kind

# %%
scores = report.score_data(preds)
shown = [m for m in ["joint", "sequential", "fused", "imagenet_cnn", "keypoints"] if m in preds]
plots.save(plots.score_distributions(scores, shown), "05_scores", scores[scores["model"].isin(shown)])

# %% [markdown]
# ## Recall per alteration family (at each model's validation threshold)

# %%
rec = report.recall_by_family(preds, thr)
grid = rec.pivot(index="family", columns="model", values="recall")[registry.ordered(rec["model"].unique())]
plots.save(plots.heatmap(grid, "Recall per alteration family"), "05_recall_by_family", rec)
grid.round(2)

# %% [markdown]
# ## Where the hard negatives bite: ROC-AUC per hard-negative kind, and false-positive rates

# %%
det = report.auc_by_detail(preds)
grid = det.pivot(index="detail", columns="model", values="roc_auc")[registry.ordered(det["model"].unique())]
plots.save(plots.heatmap(grid, "Test ROC-AUC: all positives vs each kind of negative"), "05_auc_by_detail", det)
fpr = report.fpr_by_kind(preds, thr)
fig = plots.counts(fpr, x="model", y="fpr", hue="negative_kind", title="False-positive rate at the validation threshold")
plots.save(fig, "05_fpr_by_kind", fpr)
grid.round(3)

# %% [markdown]
# ## The hardest errors of one model

# %%
test, a, b = pairs.load_pairs(paths.PROCESSED, "test")
worst = report.hardest(preds, thr, gallery_model, n=6)
idx = test.reset_index().set_index("pair_id").loc[worst["pair_id"], "index"].to_numpy()
fig = plots.pair_strip(worst, a[idx], b[idx], title_fn=lambda r: (
    f"{r.error}\n{r.hard_detail or r.negative_kind or 'positive'}"
    f"{' / ' + r.family if r.family else ''}\nscore {r.score:.2f}"))
plots.save(fig, "05_hardest", worst)
worst[["pair_id", "error", "score", "family", "negative_kind", "hard_detail"]]

# %% [markdown]
# ## Copy-detection retrieval (DISC21-style)
# References: two thirds of the test images (originals). Queries: an altered copy of half of the references, plus an altered copy of every other test image as a distractor (a distinct image, often a neighbouring slice or tile of a reference). Top-k accuracy over queries with a match; micro AP pools every (query, reference) score.

# %%
if retrieval:
    from IPython.display import display

    from bfutils import retrieval as rt

    manifest, images = prepare.load()
    build = rt.build_queries(manifest, images, split="test", seed=seed)
    ret = rt.evaluate_all(build, run.dir, device=run.device)
    ret.to_csv(paths.FIGURES / "retrieval_table.csv", index=False)
    display(ret.round(3))

# %% [markdown]
# ## Synthetic test pairs and the planted figure benchmark, side by side
# The synthetic pairs are what the models were trained for; the planted figure benchmark
# (`bfutils.planted`: 40-400 px panels, labels, JPEG, partial crops, sibling distractors, a fifth
# of the panels planted reuses; seed 0, so 1,000 panels are the README's benchmark) is what a
# proofreader meets. `run-encoder` is this run's frozen encoder, untrained, at the same input
# size (`imagenet_cnn` on the synthetic pairs). Written to `planted-<panels>-s<seed>/` in the run
# folder; "unseen sources" counts only the planted pairs cut from images outside this run's
# training split (the trained models saw figure panels of the others).

# %%
if planted_panels:
    from IPython.display import display

    from bfutils import planted_methods as pm

    ptable = pm.for_run(run.dir, n_panels=planted_panels, methods=planted_methods.split(","))
    side = pm.side_by_side(pd.read_csv(paths.FIGURES / "metrics_table.csv"), ptable)
    side.to_csv(paths.FIGURES / "synthetic_vs_planted.csv")
    display(side.round(3))

# %% [markdown]
# ## Checks

# %%
# every model of the registry's table but the three optional extra hashes
need = [m for m in registry.DISPLAY_ORDER if m not in ("dhash", "whash", "ahash")]
saved = pd.read_csv(paths.FIGURES / "metrics_table.csv")
missing = [m for m in need if m not in set(saved["model"])]
if {"joint", "sequential", "keypoints"} <= set(preds):  # the whole pipeline ran
    assert not missing, missing
ok = saved[saved["status"] == "ok"]
assert ok["roc_auc"].between(0, 1).all() and not ok[["accuracy", "f1", "roc_auc"]].isna().any().any()
assert (saved.loc[saved["status"] != "ok", "status"].str.startswith("not run")).all()
if planted_panels:
    scored = side.dropna(subset=["planted rank 1"])
    assert scored[["planted rank 1", "planted muAP"]].apply(lambda c: c.between(0, 1)).all().all()
best = ok.loc[ok["roc_auc"].idxmax(), "model"]
print("highest test ROC-AUC:", best, round(ok["roc_auc"].max(), 3))

# %% [markdown]
# This is the last notebook. The README says how to repeat the run; `python ../shared/tools/check_artifacts.py` cross-checks the files.
