"""Baselines scored on the same validation and test pairs as the pair model, plus ``fused``.

* learned, same backbone and budget as notebook 03: plain Barlow Twins (cosine of the
  embeddings, the paper's baseline), SimCLR (NT-Xent), and the Siamese fusion head trained with
  BCE only (the Pairwise-Image-Matching design; the ablation of the Barlow Twins term);
* ImageNet CNN embeddings, cosine (imagededup's CNN method);
* CLIP through open_clip (never reported when no pretrained weights could be loaded);
* perceptual hashes through imagededup (PHash, DHash, WHash, AHash);
* keypoint matching with geometric verification through OpenCV (score = inlier count);
* ``fused``: a logistic regression on the pair model's score and the keypoint evidence,
  fitted on validation pairs only (its validation scores are cross-fitted, so the threshold
  chosen on them is not chosen on the very scores the model was fitted to).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bfutils import classic, metrics, registry, train

LEARNED = registry.LEARNED_BASELINES  # the order notebook 04 trains them in


def _each_split(eval_sets, score_fn, name):
    """Apply ``score_fn(a, b)`` to the val and test pixels; returns a predictions frame."""
    frames = []
    for _split, (table, a, b) in eval_sets.items():
        frames.append(train.prediction_frame(table, score_fn(a, b), name))
    return pd.concat(frames, ignore_index=True)


def learned(schedule, cfg, manifest, images, eval_sets, data=None, save_to=None):
    """Train a learned baseline with the loop of notebook 03.

    Args:
        schedule: one of :data:`bfutils.registry.LEARNED_BASELINES`.
        cfg: the :class:`bfutils.train.TrainConfig` of the pair model (same budget).
        manifest, images, eval_sets: as for :func:`bfutils.train.train`.
        data: cached features to reuse (same frozen encoder).
        save_to: where to save the trained model (weights + config), if given.

    Returns:
        ``(preds, history, data)``; early stopping and the history's ``val_roc_auc`` use the
        validation ROC-AUC, as for the pair model.
    """
    registry.check_schedule(schedule, allowed=registry.LEARNED_BASELINES)
    cfg = train.TrainConfig(**(vars(cfg) | {"schedule": schedule}))
    model, data, hist = train.train(
        cfg, manifest, images, eval_sets, val_metric=metrics.roc_auc, data=data
    )
    if save_to is not None:
        train.save_model(model, cfg, save_to)
    return train.predictions(model, data, eval_sets, cfg, name=schedule), hist, data


def hashes(eval_sets, method="phash"):
    """Perceptual-hash similarity of every pair (imagededup)."""
    return _each_split(eval_sets, lambda a, b: classic.hash_scores(a, b, method=method), method)


def keypoints(eval_sets, method="sift", n_jobs=1):
    """Keypoint inliers of every pair; returns ``(preds, details)`` (details feed ``fused``)."""
    frames, details = [], []
    for split, (table, a, b) in eval_sets.items():
        d = classic.keypoint_details(a, b, method=method, n_jobs=n_jobs)
        d.insert(0, "pair_id", table["pair_id"].to_numpy())
        d.insert(1, "split", split)
        details.append(d)
        frames.append(train.prediction_frame(table, d["inliers"].to_numpy(), "keypoints"))
    return pd.concat(frames, ignore_index=True), pd.concat(details, ignore_index=True)


def clip(eval_sets, model_name, pretrained, device="cpu"):
    """CLIP image-tower cosine; raises :class:`classic.BaselineUnavailable` without weights."""
    model, preprocess = classic.load_clip(
        model_name=model_name, pretrained=pretrained, device=device
    )

    def score(a, b):
        ea = classic.clip_embed(model, preprocess, a, device=device)
        eb = classic.clip_embed(model, preprocess, b, device=device)
        return classic.cosine_scores(ea, eb)

    return _each_split(eval_sets, score, "clip")


def fuse_features(pair_pred: pd.DataFrame, details: pd.DataFrame) -> pd.DataFrame:
    """Per pair: the pair model's logit and the keypoint evidence.

    The evidence is the inlier and match counts, the share of matches that are inliers, and
    the number of keypoints in image a: the same inlier count means more in a smooth image
    with few keypoints (an MRI slice) than in a textured one (a tissue tile).
    """
    cols = ["inliers", "matches", "keypoints_a"]
    m = pair_pred.merge(details[["pair_id", *cols]], on="pair_id", how="left")
    if m[cols].isna().any().any():
        raise ValueError("keypoint details are missing for some pairs")
    p = m["score"].clip(1e-6, 1 - 1e-6)
    m["pair_logit"] = np.log(p / (1 - p))
    m["log_inliers"] = np.log1p(m["inliers"])
    m["log_matches"] = np.log1p(m["matches"])
    m["inlier_share"] = m["inliers"] / (m["matches"] + 1)
    m["log_keypoints_a"] = np.log1p(m["keypoints_a"])
    return m


FUSE_COLUMNS = ["pair_logit", "log_inliers", "log_matches", "inlier_share", "log_keypoints_a"]


def fused(pair_pred: pd.DataFrame, details: pd.DataFrame, seed: int = 0):
    """Logistic regression on pair score + keypoint evidence, fitted on validation only.

    Returns:
        ``(preds, coefficients, pipeline)``: test scores from the model fitted on all
        validation pairs, validation scores cross-fitted over 5 folds; the fitted coefficients;
        the fitted scikit-learn pipeline (for :func:`fused_scores`).
    """
    m = fuse_features(pair_pred, details)
    val, test = m[m["split"] == "val"], m[m["split"] == "test"]
    lr = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    xv, yv = val[FUSE_COLUMNS].to_numpy(), val["label"].to_numpy()
    val_scores = cross_val_predict(lr, xv, yv, cv=folds, method="predict_proba")[:, 1]
    lr.fit(xv, yv)
    test_scores = lr.predict_proba(test[FUSE_COLUMNS].to_numpy())[:, 1]
    cols = ["pair_id", "split", "label", "family", "negative_kind", "hard_detail"]
    out = pd.concat([val[cols].assign(score=val_scores), test[cols].assign(score=test_scores)])
    coef = dict(zip(FUSE_COLUMNS, lr[-1].coef_[0], strict=True)) | {
        "intercept": lr[-1].intercept_[0]
    }
    return out.assign(model="fused").reset_index(drop=True), coef, lr


def fused_scores(pipeline, pair_scores: np.ndarray, details: pd.DataFrame) -> np.ndarray:
    """Apply a fitted fused model to new pairs (pair-model scores + keypoint details)."""
    pred = pd.DataFrame({"pair_id": np.arange(len(pair_scores)), "score": pair_scores})
    feats = fuse_features(pred, details.assign(pair_id=np.arange(len(details))))
    return pipeline.predict_proba(feats[FUSE_COLUMNS].to_numpy())[:, 1]


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def save_fused(pipeline, fuse_with: str, path) -> None:
    """Save the fitted fused model with the name of the pair model it combines."""
    import joblib

    joblib.dump({"pipeline": pipeline, "fuse_with": fuse_with}, path)


def load_fused(path) -> tuple:
    """``(pipeline, fuse_with)`` saved by :func:`save_fused`."""
    import joblib

    saved = joblib.load(path)
    return saved["pipeline"], saved["fuse_with"]
