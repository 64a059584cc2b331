"""Does each change to the paper's pair model help? Train variants, score them on validation.

Issue 9, item 3: every variant of the joint model is trained with the same budget and seed,
then scored on two **validation** sets, never on a test set:

- the synthetic validation pairs of the run (notebook 02: every alteration family, >= 30 %
  hard negatives), ROC-AUC;
- a planted figure validation set (:func:`planted_validation`): panels made exactly as the
  planted figure benchmark makes them (40-400 px, labels, JPEG, partial crops, siblings), from
  source images that neither the evaluation benchmark (seed 0) nor the run's training split
  uses. Measured: partner at rank 1 (each planted query against every other panel) and the
  ROC-AUC of the planted pairs against every other pair of panels.

Intervals are 95 % percentile bootstraps: synthetic pairs resampled within each label,
planted pairs resampled with the other pairs fixed. Each input size also gets the untrained
encoder's cosine at that size, the reference a trained model must beat (issue 9: "beats its
own untrained encoder").
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from bfutils import calibset, metrics, models, planted_eval, retrieval, train
from bfutils.data.pixels import fit_square
from bfutils.progress import bar

VARIANTS: dict[str, dict] = {  # ordered so that variants sharing cached features are adjacent
    "joint (paper)": {},
    "cosine residual": {"residual": True},
    "BT weight 0": {"bt_weight": 0.0},
    "BT weight 2": {"bt_weight": 2.0},
    "projector 256-256-128": {"projector_widths": (256, 256, 128)},
    "figure pairs": {"figure_pairs": 4},
    "figure pairs + residual": {"figure_pairs": 4, "residual": True},
    "last stage trained": {"train_stages": 1},
    "last stage trained + figure pairs + residual": {
        "train_stages": 1,
        "figure_pairs": 4,
        "residual": True,
    },  # fmt: skip
    "input 160 px": {"input_size": 160},
    "input 160 px + figure pairs + residual": {
        "input_size": 160,
        "figure_pairs": 4,
        "residual": True,
    },  # fmt: skip
}
"""Name -> :class:`bfutils.train.TrainConfig` fields that differ from the run's joint model."""

ENCODER = "untrained encoder cosine"
"""Name prefix of the reference rows (``ENCODER + " 96 px"``)."""


def planted_validation(
    manifest: pd.DataFrame, n_panels: int = 600, n_planted: int = 150, seed: int = 1
) -> dict:
    """The planted figure validation set: ``calibset.build`` minus the training images.

    Returns:
        ``{"images": [...], "truth": DataFrame(query, source, family), "notes": [...]}``.
    """
    train_ids = set(manifest.loc[manifest["split"] == "train", "image_id"])
    images, _, truth, notes = calibset.build(
        n_panels=n_panels, n_planted=n_planted, seed=seed, exclude=train_ids
    )
    return {"images": images, "truth": truth, "notes": notes}


def planted_matrices(model, cfg, panels: list[np.ndarray], image_size: int) -> dict:
    """Pair-head and encoder-cosine similarity of every two panels (symmetric, NaN diagonal).

    Panels are padded to the run's ``image_size`` square as a scan of the run's model does
    (:func:`bfutils.planted_methods.run_model`), then resized to the model's input size.
    """
    square = np.stack([fit_square(p, size=image_size, fit="pad") for p in panels])
    device = next(model.parameters()).device
    feats = models.encode_images(
        model.encoder, train.model_norm(model), square, size=cfg.input_size,
        batch_size=128, device=str(device), progress=False,
    )  # fmt: skip
    f = torch.from_numpy(feats).to(device)
    out = {
        "head": retrieval._pair_head_matrix(model, f, f, progress=False),
        "cosine": retrieval._cosine_matrix(f, f),
    }
    for m in out.values():
        np.fill_diagonal(m, np.nan)
    return out


def planted_scores(sim: np.ndarray, truth: pd.DataFrame, n_boot: int, seed: int) -> dict:
    """Rank-1 rate of the planted queries and pair ROC-AUC, each with a bootstrap interval."""
    q, s = truth["query"].to_numpy(), truth["source"].to_numpy()
    filled = np.where(np.isnan(sim), -np.inf, sim)
    hits = (filled[q].argmax(axis=1) == s).astype(float)
    positive = np.zeros(sim.shape, bool)
    positive[q, s] = positive[s, q] = True
    upper = np.triu(np.ones(sim.shape, bool), k=1)
    pos = filled[q, s]
    neg = filled[upper & ~positive]
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, 2))
    for b in range(n_boot):
        k = rng.integers(len(q), size=len(q))
        boot[b] = hits[k].mean(), planted_eval._pair_roc_auc(pos[k], neg)
    low, high = np.quantile(boot, [0.025, 0.975], axis=0)
    return {
        "planted_rank1": hits.mean(), "planted_rank1_low": low[0],
        "planted_rank1_high": high[0],
        "planted_auc": planted_eval._pair_roc_auc(pos, neg), "planted_auc_low": low[1],
        "planted_auc_high": high[1],
    }  # fmt: skip


def synthetic_scores(labels: np.ndarray, scores: np.ndarray, n_boot: int, seed: int) -> dict:
    """ROC-AUC of the synthetic validation pairs with its bootstrap interval."""
    low, high = metrics.bootstrap_ci(labels, scores, n_boot=n_boot, seed=seed)
    return {"synthetic_auc": metrics.roc_auc(labels, scores), "synthetic_auc_low": low,
            "synthetic_auc_high": high}  # fmt: skip


def run(
    base: train.TrainConfig,
    manifest: pd.DataFrame,
    images: np.ndarray,
    eval_sets: dict,
    validation: dict,
    variants: dict[str, dict] | None = None,
    image_size: int | None = None,
    n_boot: int = 1000,
    progress: bool = True,
) -> pd.DataFrame:
    """Train every variant of ``base`` and score it (see the module docstring).

    Args:
        base: the run's joint configuration (budget, seed, device); variants override fields.
        manifest, images, eval_sets: the run's data (``prepare.load``, ``pairs.load_pairs``);
            only ``eval_sets["val"]`` is scored.
        validation: from :func:`planted_validation`.
        variants: name -> overrides (default :data:`VARIANTS`).
        image_size: the run's square image side (default: that of ``images``).
        n_boot: bootstrap replicates of every interval.
        progress: show a bar over the variants.

    Returns:
        One row per variant and one per untrained-encoder reference (``kind``), with the
        overrides, ``train_seconds`` (including the encoder features it caches when it cannot
        reuse those of the variant before) and the scores of :func:`synthetic_scores` and
        :func:`planted_scores`.
    """
    variants = VARIANTS if variants is None else variants
    image_size = int(image_size or images.shape[1])
    val = {"val": eval_sets["val"]}
    labels = eval_sets["val"][0]["label"].to_numpy()
    rows, data, references = [], None, {}
    for name, changes in bar(list(variants.items()), desc="ablation", disable=not progress):
        cfg = replace(base, schedule="joint", **changes)
        start = time.perf_counter()
        model, data, _ = train.train(
            cfg, manifest, images, val, val_metric=metrics.roc_auc, data=data, progress=False
        )
        seconds = time.perf_counter() - start
        sims = planted_matrices(model, cfg, validation["images"], image_size)
        scored = data.eval_logits_or_cos(model, "val", "head")
        rows.append({
            "variant": name, "kind": "trained", "changes": _describe(changes),
            "input_size": cfg.input_size, "train_seconds": round(seconds, 1),
            **synthetic_scores(labels, scored, n_boot, base.seed),
            **planted_scores(sims["head"], validation["truth"], n_boot, base.seed),
        })  # fmt: skip
        if cfg.input_size not in references:
            fa, fb = data.eval_reference["val"]  # the untrained encoder's features
            cos = torch.nn.functional.cosine_similarity(fa, fb, dim=1).cpu().numpy()
            if not cfg.keeps_pretrained_encoder:  # the cosine of an encoder that was not trained
                sims = planted_matrices(_untrained(cfg), cfg, validation["images"], image_size)
            references[cfg.input_size] = {
                "variant": f"{ENCODER} {cfg.input_size} px", "kind": "reference",
                "changes": "no training", "input_size": cfg.input_size, "train_seconds": 0.0,
                **synthetic_scores(labels, cos, n_boot, base.seed),
                **planted_scores(sims["cosine"], validation["truth"], n_boot, base.seed),
            }  # fmt: skip
    return pd.DataFrame(rows + list(references.values()))


def _untrained(cfg: train.TrainConfig):
    """The pair model of ``cfg`` as built, before training (its encoder is the pretrained one)."""
    from bfutils import runlog

    torch.manual_seed(cfg.seed)
    return train.build_model(cfg, pretrained=cfg.pretrained).to(runlog.resolve_device(cfg.device))


def _describe(changes: dict) -> str:
    if not changes:
        return "as the run's joint model"
    return ", ".join(f"{k}={v}" for k, v in changes.items())


def table(result: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The ablation as shown in notebook 07: each score as ``value [low, high]``."""
    out = result[["variant", "changes", "input_size"]].fillna({"changes": ""})
    for col, label in (
        ("synthetic_auc", "synthetic val ROC-AUC"),
        ("planted_auc", "planted val pair ROC-AUC"),
        ("planted_rank1", "planted val rank 1"),
    ):
        out[label] = [
            metrics._interval(r[col], r[f"{col}_low"], r[f"{col}_high"], digits)
            for _, r in result.iterrows()
        ]
    return out.set_index("variant")


def select(names: str) -> dict[str, dict]:
    """Variants named in a comma-separated string (``"all"``: every one of :data:`VARIANTS`).

    Raises:
        ValueError: a name is not in :data:`VARIANTS` (the message lists them).
    """
    if names.strip() == "all":
        return dict(VARIANTS)
    picked = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in picked if n not in VARIANTS]
    if unknown or not picked:
        raise ValueError(f"unknown ablation variants {unknown}; known: {list(VARIANTS)}")
    return {n: VARIANTS[n] for n in picked}


def verdict(result: pd.DataFrame) -> str:
    """One line per trained variant: does it beat the untrained encoder at its input size?"""
    ref = result[result["kind"] == "reference"].set_index("input_size")
    lines = []
    for r in result[result["kind"] == "trained"].itertuples():
        e = ref.loc[r.input_size]
        words = [
            f"{name} {getattr(r, col):.3f} vs {e[col]:.3f} "
            f"({'beats' if getattr(r, col) > e[col] else 'does not beat'})"
            for col, name in (("planted_auc", "planted AUC"), ("planted_rank1", "rank 1"),
                              ("synthetic_auc", "synthetic AUC"))
        ]  # fmt: skip
        lines.append(f"{r.variant}: " + "; ".join(words) + f" the encoder at {r.input_size} px")
    return "\n".join(lines)


def figure(result: pd.DataFrame):
    """Point and 95 % interval of each variant on the three validation scores."""
    import matplotlib.pyplot as plt

    cols = (("synthetic_auc", "synthetic val ROC-AUC"), ("planted_auc", "planted val pair ROC-AUC"),
            ("planted_rank1", "planted val partner at rank 1"))  # fmt: skip
    y = np.arange(len(result))[::-1]
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.45 * len(result) + 1.5), sharey=True)
    for ax, (col, title) in zip(axes, cols, strict=True):
        ref = (result["kind"] == "reference").to_numpy()
        err = [result[col] - result[f"{col}_low"], result[f"{col}_high"] - result[col]]
        for mask, colour in ((~ref, "tab:blue"), (ref, "tab:grey")):
            ax.errorbar(result[col][mask], y[mask], xerr=np.asarray(err)[:, mask], fmt="o",
                        color=colour, capsize=3)  # fmt: skip
        for r in result[ref].itertuples():
            ax.axvline(getattr(r, col), color="tab:grey", ls=":", lw=1)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, result["variant"])
    fig.suptitle("Ablation of the joint model on validation (grey: untrained encoder cosine)")
    fig.tight_layout()
    return fig
