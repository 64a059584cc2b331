# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Make pairs
#
# **Purpose.** Draw labelled image pairs from the splits of notebook 01. A pair is positive when
# image *b* was derived from the same source image as *a* by an alteration (crop, flip, rotation,
# colour, contrast, blur, noise, affine warp, JPEG, or a composition), negative when *a* and *b*
# are distinct source images.
#
# * **Positives**: `(x, A(x))` and `(A1(x), A2(x))`; the families cycle so every one occurs.
# * **Easy negatives**: an image of another group (never a near-identical one).
# * **Hard negatives**: another image of the *same* group: a neighbouring slice, an adjacent
#   tile, a consecutive frame, the same position in another tissue volume. `hard_detail` says
#   which and how far (`slice+4mm`, `tile+1`, `tissue`, `frame+1`).
# * Negatives are altered too (`altered_negative_share`), so "was anything altered?" cannot
#   answer "was b derived from a?".
#
# Validation and test pairs are **materialized once** (pixels saved), so every model in
# notebooks 03-05 is scored on identical pairs. Training pairs are drawn on the fly by
# `bfutils.pairs.PairSampler` with the same rules.
#
# **Inputs** (run folder). `data/manifest.csv`, `data/images.npz`.
# **Outputs** (run folder). `data/pairs_{val,test}.csv` (+ `.npz` pixels), figures
# `02_alterations`, `02_hard_negatives`, `02_pair_counts` (PNG + CSV).

# %% tags=["parameters"]
n_val_pairs: int = 150  # validation pairs (thresholds and early stopping are chosen on these)
n_test_pairs: int = 300  # test pairs (every model is scored on these)
positive_share: float = 0.4  # share of positive pairs (the paper's protocol)
hard_share: float = 0.4  # share of negatives drawn from the same group
two_sided_share: float = 0.5  # share of positives made as (A1(x), A2(x))
altered_negative_share: float = 0.5  # share of negatives whose sides are altered too
seed: int = 0  # same seed, same pairs

# %%
from bfutils import pairs, paths, plots, prepare, runlog

run = runlog.start(
    "02_make_pairs",
    dict(n_val_pairs=n_val_pairs, n_test_pairs=n_test_pairs, positive_share=positive_share,
         hard_share=hard_share, two_sided_share=two_sided_share,
         altered_negative_share=altered_negative_share, seed=seed),
    required={"n_val_pairs": int, "n_test_pairs": int, "positive_share": float, "seed": int},
)
manifest, images = prepare.load()
config = pairs.PairConfig(positive_share=positive_share, hard_share=hard_share,
                          two_sided_share=two_sided_share,
                          altered_negative_share=altered_negative_share)

# %% [markdown]
# ## The alteration catalogue: one example of every family

# %%
example = images[manifest.index[manifest["split"] == "train"][0]]
altered, alt_table = prepare.alteration_examples(example, seed=seed)
fig = plots.image_grid(altered, list(alt_table["family"]), ncols=7, size=1.8)
plots.save(fig, "02_alterations", alt_table)
alt_table

# %% [markdown]
# ## Materialize validation and test pairs

# %%
tables = prepare.make_eval_pairs(manifest, images, n_val=n_val_pairs, n_test=n_test_pairs,
                                 seed=seed, config=config)
summary = prepare.pair_summary(tables)
fig = plots.counts(summary.melt(id_vars="kind", var_name="split", value_name="pairs"),
                   x="kind", y="pairs", hue="split", title="Pairs per kind")
plots.save(fig, "02_pair_counts", summary)
summary

# %% [markdown]
# ## Hard negatives beside positives
# Each hard negative is shown next to a positive made from the same source image: the hard negative is a *different* image that looks alike.

# %%
test, a, b = pairs.load_pairs(paths.PROCESSED, "test")
shown = prepare.hard_negative_examples(test, n=6, seed=seed)
idx = shown.index.to_numpy()
fig = plots.pair_strip(shown, a[idx], b[idx], title_fn=lambda r: (
    f"positive\n{r.family}" if r.label == 1 else f"hard negative\n{r.hard_detail}"))
plots.save(fig, "02_hard_negatives", shown)
test["hard_detail"].value_counts().head(12)

# %% [markdown]
# ## Checks

# %%
from bfutils import augment

split_of = dict(zip(manifest["image_id"], manifest["split"], strict=True))
for name, t in tables.items():
    assert set(t["image_a"].map(split_of)) == {name} and set(t["image_b"].map(split_of)) == {name}
    assert t["pair_id"].is_unique
    assert abs(t["label"].mean() - positive_share) < 0.02
    neg = t[t["label"] == 0]
    assert set(neg["negative_kind"]) <= {"easy", "hard"}
    assert (neg.loc[neg["negative_kind"] == "easy", "group_a"]
            != neg.loc[neg["negative_kind"] == "easy", "group_b"]).all()
    assert (neg.loc[neg["negative_kind"] == "hard", "hard_detail"] != "").all()
    assert (t.loc[t["label"] == 1, "image_a"] == t.loc[t["label"] == 1, "image_b"]).all()
neg = tables["test"][tables["test"]["label"] == 0]
hard_frac = (neg["negative_kind"] == "hard").mean()
assert hard_frac >= 0.3 or hard_share < 0.3, hard_frac
assert set(augment.FAMILIES) <= set(tables["test"].loc[tables["test"]["label"] == 1, "family"])
print(f"test: {len(tables['test'])} pairs, hard share of negatives {hard_frac:.2f}")

# %% [markdown]
# Next: [`03_train_barlow_twins.ipynb`](03_train_barlow_twins.ipynb) trains the paper's pair model on these splits.
