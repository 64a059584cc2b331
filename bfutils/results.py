"""Prediction files and per-model summaries shared by notebooks 03-05.

Every model leaves ``predictions_<model>.csv`` in the run folder with one row per validation
and test pair (``pair_id, split, label, score, family, negative_kind, hard_detail``); every
table is computed from these files, never typed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bfutils import metrics, pairs


def write_predictions(pred: pd.DataFrame, folder: Path, model: str) -> Path:
    """Write ``predictions_<model>.csv``; refuses a frame without val and test pairs."""
    missing = {"val", "test"} - set(pred["split"])
    if missing:
        raise ValueError(f"predictions for {model} lack the {sorted(missing)} pairs")
    path = Path(folder) / f"predictions_{model}.csv"
    pred.assign(model=model).to_csv(path, index=False)
    return path


def read_predictions(folder: Path) -> dict[str, pd.DataFrame]:
    """All ``predictions_*.csv`` files of a run folder, by model name."""
    out = {}
    for p in sorted(Path(folder).glob("predictions_*.csv")):
        out[p.stem.removeprefix("predictions_")] = pd.read_csv(p, keep_default_na=False)
    return out


def summary(pred: pd.DataFrame, model: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Threshold chosen on validation, metrics with bootstrap intervals on test."""
    val, test = pred[pred["split"] == "val"], pred[pred["split"] == "test"]
    return metrics.evaluate(val, test, model=model, n_boot=n_boot, seed=seed)


def auc_breakdown(pred: pd.DataFrame, model: str) -> pd.DataFrame:
    """Test ROC-AUC of all positives against each negative kind and kind of hard negative.

    ``hard_class`` pools details of one kind and similar distance (:func:`pairs.coarse_detail`).
    """
    test = pred[pred["split"] == "test"]
    test = test.assign(hard_class=test["hard_detail"].map(pairs.coarse_detail))
    parts = []
    for by in ("negative_kind", "hard_class", "hard_detail"):
        t = metrics.auc_by(test, by=by).rename(columns={by: "negatives"})
        parts.append(t.assign(by=by))
    return pd.concat(parts, ignore_index=True).assign(model=model)
