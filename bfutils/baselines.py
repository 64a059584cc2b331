"""Baselines scored on the same validation and test pairs as the pair model, plus ``fused``.

* learned, same backbone and budget as notebook 03: plain Barlow Twins (cosine of the
  embeddings, the paper's baseline), SimCLR (NT-Xent), and the Siamese fusion head trained with
  BCE only (the Pairwise-Image-Matching design; the ablation of the Barlow Twins term);
* ImageNet CNN embeddings, cosine (imagededup's CNN method);
* CLIP through open_clip (never reported when no pretrained weights could be loaded);
* perceptual hashes through imagededup (PHash, DHash, WHash, AHash);
* keypoint matching with geometric verification through OpenCV (score = inlier count);
* ``fused``: a logistic regression on the pair model's score and the finder's evidence for the
  pair (:func:`verify_evidence`: one-to-one keypoint matches, a plausible fit and its
  a-contrario evidence, the SSCD copy cosine, the perceptual-hash and grey-thumbnail
  similarities, every one symmetric in the two images), fitted on validation pairs only (its
  validation scores are cross-fitted, so the threshold chosen on them is not chosen on the
  very scores the model was fitted to). It is saved as plain JSON (:func:`save_fused`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

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


VERIFY_COLUMNS = ["evidence", "log_inliers", "inlier_ratio", "coverage", "cos_copy", "phash_sim",
                  "thumb_sim"]  # fmt: skip
"""The finder's pair features (:func:`bfutils.detector.pair_features`) the fused model uses.

In a one-off comparison on the synthetic pairs of a smoke run (2026-12-04, the same pair-model
scores; validation cross-fitted / test ROC-AUC) these with the pair logit gave 0.979 / 0.989;
the earlier inputs (the pair logit and the inlier and
match counts of :func:`bfutils.classic.keypoint_details`, plus the keypoint count of image a,
which made the score depend on the order of the two images) 0.971 / 0.979."""
FUSE_COLUMNS = ["pair_logit", *VERIFY_COLUMNS]


def verify_details(a_images, b_images, det=None, show_progress: bool = False) -> pd.DataFrame:
    """The finder's evidence for each pair ``(a_images[i], b_images[i])``.

    Each distinct image is described once (:func:`bfutils.descriptors.compute`: keypoints,
    copy descriptor, hashes, thumbnail), then each pair is verified
    (:func:`bfutils.verify.verify`) and its symmetric features taken
    (:func:`bfutils.detector.pair_features`): swapping the two images changes nothing.

    Args:
        a_images: RGB uint8 images.
        b_images: RGB uint8 images, as many.
        det: the detector whose descriptors and keypoint settings are used (default: the
            shipped one, :func:`bfutils.detector.default`).
        show_progress: progress bar over the distinct images.

    Returns:
        One row per pair with :data:`VERIFY_COLUMNS`, ``inliers``, ``matches`` and
        ``seconds`` (the pair's share of the description time plus its verification).
    """
    import hashlib

    from bfutils import descriptors, detector, progress, verify

    det = detector.default() if det is None else det
    unused = ("xfeat", "template", "aligned")
    if any(det.preprocess.get(k) for k in unused):
        # not among VERIFY_COLUMNS: spare their cost (the pipeline's tables reproduce)
        pre = {k: v for k, v in det.preprocess.items() if k not in unused}
        det = dataclasses.replace(det, preprocess=pre)
    if len(a_images) != len(b_images):
        raise ValueError(f"{len(a_images)} images a but {len(b_images)} images b")
    keys, distinct = [], {}
    for image in (*a_images, *b_images):
        image = np.ascontiguousarray(image, dtype=np.uint8)
        key = hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()
        keys.append(key)
        distinct.setdefault(key, image)
    t0 = time.perf_counter()
    recs = {}
    order = list(distinct)
    bar = progress.bar(total=len(order), desc="describe", unit="img", disable=not show_progress)
    for start in range(0, len(order), 64):
        chunk = order[start : start + 64]
        recs |= dict(zip(chunk, descriptors.compute([distinct[k] for k in chunk], det),
                         strict=True))  # fmt: skip
        bar.update(len(chunk))
    bar.close()
    per_pair = (time.perf_counter() - t0) / max(len(a_images), 1)
    n = len(a_images)
    rows = []
    for ka, kb in zip(keys[:n], keys[n:], strict=True):
        t1 = time.perf_counter()
        ev = verify.verify(recs[ka], recs[kb], det.keypoints, sha_a=ka, sha_b=kb)
        feats = detector.pair_features(recs[ka], recs[kb], ev, det)
        rows.append({**{c: feats[c] for c in VERIFY_COLUMNS}, "inliers": ev["inliers"],
                     "matches": ev["matches"],
                     "seconds": per_pair + time.perf_counter() - t1})  # fmt: skip
    return pd.DataFrame(rows, columns=[*VERIFY_COLUMNS, "inliers", "matches", "seconds"])


def verify_evidence(eval_sets, det=None) -> pd.DataFrame:
    """:func:`verify_details` of every validation and test pair, with ``pair_id`` and ``split``
    (what :func:`fused` takes)."""
    frames = []
    for split, (table, a, b) in eval_sets.items():
        d = verify_details(a, b, det=det)
        d.insert(0, "pair_id", table["pair_id"].to_numpy())
        d.insert(1, "split", split)
        frames.append(d)
    return pd.concat(frames, ignore_index=True)


def fuse_features(pair_pred: pd.DataFrame, details: pd.DataFrame) -> pd.DataFrame:
    """Per pair: the pair model's logit and the finder's evidence (:data:`VERIFY_COLUMNS`)."""
    missing = [c for c in VERIFY_COLUMNS if c not in details.columns]
    if missing:
        raise ValueError(
            f"pair details lack {missing}: they come from baselines.verify_evidence "
            "(keypoint_details.csv of an older run has other columns; re-run notebook 04)"
        )
    keys = ["pair_id", "split"] if {"split"} <= set(details) & set(pair_pred) else ["pair_id"]
    m = pair_pred.merge(
        details[[*keys, *VERIFY_COLUMNS]], on=keys, how="left", validate="one_to_one"
    )
    if m[VERIFY_COLUMNS].isna().any().any():
        raise ValueError("verification details are missing for some pairs")
    p = m["score"].clip(1e-6, 1 - 1e-6)
    m["pair_logit"] = np.log(p / (1 - p))
    return m


FUSE_DEGREE = 2
"""Degree of the fused model's logistic regression: the standardised inputs, their squares and
their products two by two. Chosen on the 5-fold cross-fitted validation ROC-AUC of the smoke
run of 2026-12-04 (:func:`compare_degrees`: degree 1 0.979, degree 2 0.9885, degree 3 0.990;
the third degree's gain is within the noise of 600 pairs, at 164 terms instead of 44)."""


def fused_pipeline(degree: int = FUSE_DEGREE):
    """The unfitted fused model: standardise, polynomial terms, standardise, logistic (C=1)."""
    steps = [StandardScaler()]
    if degree > 1:
        steps += [PolynomialFeatures(degree, include_bias=False), StandardScaler()]
    return make_pipeline(*steps, LogisticRegression(C=1.0, max_iter=5000))


def fused(pair_pred: pd.DataFrame, details: pd.DataFrame, seed: int = 0,
          degree: int = FUSE_DEGREE):  # fmt: skip
    """Logistic regression (:func:`fused_pipeline`) on pair score + the finder's evidence,
    fitted on validation only.

    Returns:
        ``(preds, coefficients, pipeline)``: test scores from the model fitted on all
        validation pairs, validation scores cross-fitted over 5 folds; the fitted coefficients;
        the fitted scikit-learn pipeline (for :func:`fused_scores`).
    """
    m = fuse_features(pair_pred, details)
    val, test = m[m["split"] == "val"], m[m["split"] == "test"]
    lr = fused_pipeline(degree)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    xv, yv = val[FUSE_COLUMNS].to_numpy(), val["label"].to_numpy()
    val_scores = cross_val_predict(lr, xv, yv, cv=folds, method="predict_proba")[:, 1]
    lr.fit(xv, yv)
    test_scores = lr.predict_proba(test[FUSE_COLUMNS].to_numpy())[:, 1]
    cols = ["pair_id", "split", "label", "family", "negative_kind", "hard_detail"]
    out = pd.concat([val[cols].assign(score=val_scores), test[cols].assign(score=test_scores)])
    names = lr[:-1].get_feature_names_out(FUSE_COLUMNS)  # the inputs, or their polynomial terms
    coef = dict(zip(names, lr[-1].coef_[0], strict=True)) | {"intercept": lr[-1].intercept_[0]}
    return out.assign(model="fused").reset_index(drop=True), coef, lr


def compare_degrees(pair_pred: pd.DataFrame, details: pd.DataFrame, degrees=(1, 2, 3),
                    seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """The fused model at each degree: cross-fitted validation ROC-AUC (what chooses
    :data:`FUSE_DEGREE`) and, for the record, test ROC-AUC."""
    rows = []
    for degree in degrees:
        out = fused(pair_pred, details, seed=seed, degree=degree)[0]
        auc = {s: metrics.roc_auc(g["label"].to_numpy(), g["score"].to_numpy())
               for s, g in out.groupby("split")}  # fmt: skip
        rows.append({"degree": degree, "val_roc_auc": auc["val"], "test_roc_auc": auc["test"]})
    return pd.DataFrame(rows)


def fused_scores(pipeline, pair_scores: np.ndarray, details: pd.DataFrame) -> np.ndarray:
    """Apply a fitted fused model to new pairs (pair-model scores + :func:`verify_details`)."""
    pred = pd.DataFrame({"pair_id": np.arange(len(pair_scores)), "score": pair_scores})
    feats = fuse_features(pred, details.assign(pair_id=np.arange(len(details))))
    return pipeline.predict_proba(feats[FUSE_COLUMNS].to_numpy())[:, 1]


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def save_fused(pipeline, fuse_with: str, path) -> None:
    """Save the fitted fused model as plain JSON: the pair model it combines, its columns, the
    standardisation and the logistic coefficients (no pickle: it loads without running code).
    """
    import json

    from bfutils import detector

    scaler, lr = pipeline[0], pipeline[-1]
    spec = {"fuse_with": fuse_with, "columns": list(FUSE_COLUMNS),
            "detector": detector.default().cache_key(),
            "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
            "coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0])}  # fmt: skip
    if len(pipeline) > 2:  # polynomial terms: the exponents of each term, then their scaling
        poly, scaler2 = pipeline[1], pipeline[2]
        spec |= {"powers": poly.powers_.tolist(), "poly_mean": scaler2.mean_.tolist(),
                 "poly_scale": scaler2.scale_.tolist()}  # fmt: skip
    Path(path).write_text(json.dumps(spec, indent=1))


class FusedModel:
    """A fused model read back from JSON: ``predict_proba`` as scikit-learn's pipeline has it."""

    def __init__(self, spec: dict):
        self.columns = spec["columns"]
        self.mean, self.scale = np.asarray(spec["mean"]), np.asarray(spec["scale"])
        self.coef, self.intercept = np.asarray(spec["coef"]), float(spec["intercept"])
        self.powers = np.asarray(spec["powers"]) if "powers" in spec else None
        if self.powers is not None:
            self.poly_mean = np.asarray(spec["poly_mean"])
            self.poly_scale = np.asarray(spec["poly_scale"])
            if self.powers.shape != (len(self.coef), len(self.columns)):
                raise ValueError(f"powers {self.powers.shape} do not fit {len(self.coef)} "
                                 f"coefficients of {len(self.columns)} columns")  # fmt: skip

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, 2)`` probabilities of "not derived" and "derived"."""
        z = (np.asarray(x, dtype=float) - self.mean) / self.scale
        if self.powers is not None:
            z = np.prod(z[:, None, :] ** self.powers[None], axis=2)
            z = (z - self.poly_mean) / self.poly_scale
        p = 1.0 / (1.0 + np.exp(-(z @ self.coef + self.intercept)))
        return np.column_stack([1 - p, p])


def load_fused(path) -> tuple:
    """``(model, fuse_with)`` saved by :func:`save_fused`.

    Raises:
        ValueError: the file is not a fused model of this version (e.g. an older run's).
    """
    import json

    from bfutils import detector

    try:
        spec = json.loads(Path(path).read_text())
        columns, model = spec["columns"], FusedModel(spec)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a fused model file ({err}); re-run notebook 04") from err
    if columns != FUSE_COLUMNS:
        raise ValueError(
            f"{path} fuses {columns}, this version fuses {FUSE_COLUMNS}: re-run notebook 04"
        )
    made_with, now = spec.get("detector"), detector.default().cache_key()
    if made_with is not None and made_with != now:
        raise ValueError(
            f"{path} was fitted on the features of detector {made_with}, the shipped one is now "
            f"{now}: its coefficients do not fit the new features; re-run notebook 04"
        )
    return model, spec["fuse_with"]
