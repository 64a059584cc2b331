"""Scores to numbers: thresholds, pair metrics with bootstrap intervals, copy-detection retrieval.

Every model gives one float ``score`` per pair (higher = more likely that image b was derived
from image a). The decision threshold is chosen on the validation pairs and applied unchanged to
the test pairs, so test numbers never see test labels. Threshold-free numbers (ROC-AUC, average
precision) are reported beside them, with a stratified bootstrap interval for ROC-AUC.

Retrieval follows the DISC21 matching track (Douze et al. 2021, "The 2021 Image Similarity
Dataset and Challenge", https://arxiv.org/abs/2106.09672; code github.com/facebookresearch/isc2021)
as used by SSCD (Pizzi et al. 2022, https://arxiv.org/abs/2202.10261).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

PAIR_COLUMNS = ("label", "family", "negative_kind")
RULES = ("f1", "f0.5", "youden", "accuracy")


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Labels as 0/1 ints and scores as floats, checked for equal length, 0/1 labels and NaN."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=float)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be 1-D of equal length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1; got values {sorted(set(y.tolist()))[:5]}")
    if np.isnan(s).any():
        raise ValueError(f"scores contain {int(np.isnan(s).sum())} NaN value(s)")
    return y.astype(int), s


def choose_threshold(labels, scores, rule: str = "f1") -> float:
    """Pick the decision threshold on validation pairs.

    A pair is predicted "derived" when ``score >= threshold``. Every distinct score is a
    candidate (from :func:`sklearn.metrics.roc_curve`); the returned value sits halfway between
    the best candidate and the next lower distinct score, so test scores that fall between two
    validation scores are not decided by which side of a tie they land on.

    Args:
        labels: 0/1 validation labels.
        scores: validation scores, higher = more likely derived.
        rule: ``"f1"`` (max F1 of the positive class), ``"f0.5"`` (max F-beta with beta 0.5:
            precision counts twice as much as recall, for a flag that accuses someone),
            ``"youden"`` (max TPR - FPR) or ``"accuracy"`` (max accuracy). Ties go to the
            highest threshold.

    Returns:
        The threshold; ``inf`` when predicting nothing as derived is best.
    """
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} is not one of {RULES}")
    y, s = _as_arrays(labels, scores)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"choose_threshold needs both classes; got {n_pos} pos, {n_neg} neg")
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)  # thr[0] = inf: all negative
    tp, fp = tpr * n_pos, fpr * n_neg
    if rule in ("f1", "f0.5"):
        b2 = 1.0 if rule == "f1" else 0.25  # F-beta = (1 + b2) tp / ((1 + b2) tp + b2 fn + fp)
        objective = (1 + b2) * tp / ((1 + b2) * tp + b2 * (n_pos - tp) + fp)
    elif rule == "youden":
        objective = tpr - fpr
    else:
        objective = (tp + n_neg - fp) / len(y)
    best = int(np.argmax(objective))  # thresholds descend, so the first max is the highest
    if best == 0 or best == len(thr) - 1:
        return float(thr[best])
    return float((thr[best] + thr[best + 1]) / 2)


def threshold_for_false_budget(labels, scores, max_false: int) -> float:
    """The threshold that flags the most positives with at most ``max_false`` negatives at or
    above it (the highest such threshold among equals).

    Unlike an F-measure, this does not depend on how many positives the validation set holds:
    a calibration set with one planted reuse in four panels would otherwise set the threshold
    for a manuscript with one in a hundred. The threshold sits halfway between the lowest
    flagged validation score and the next lower distinct score, as in
    :func:`choose_threshold`.

    Returns:
        The threshold; ``inf`` when no threshold flags a positive within the budget.
    """
    if max_false < 0:
        raise ValueError(f"max_false must be >= 0; got {max_false}")
    y, s = _as_arrays(labels, scores)
    if not y.sum():
        raise ValueError("threshold_for_false_budget needs at least one positive")
    values = np.unique(s)[::-1]  # distinct scores, descending
    order = np.argsort(-s, kind="stable")
    ranked, flags = s[order], y[order]
    # negatives and positives at or above each distinct value
    upto = np.searchsorted(-ranked, -values, side="right")
    false = np.cumsum(1 - flags)[upto - 1]
    true = np.cumsum(flags)[upto - 1]
    ok = np.flatnonzero(false <= max_false)
    if not len(ok) or true[ok].max() == 0:
        return float("inf")
    best = ok[np.flatnonzero(true[ok] == true[ok].max())[0]]  # highest threshold among equals
    if best == len(values) - 1:
        return float(values[best])
    return float((values[best] + values[best + 1]) / 2)


def binary_metrics(labels, scores, threshold: float) -> dict[str, float]:
    """Accuracy, F1, precision and recall of ``score >= threshold`` (zero_division=0)."""
    y, s = _as_arrays(labels, scores)
    pred = (s >= threshold).astype(int)
    return {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
    }


def roc_auc(labels, scores) -> float:
    """ROC-AUC (ties count one half, as in the Mann-Whitney U); NaN with fewer than 2 classes."""
    y, s = _as_arrays(labels, scores)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(skm.roc_auc_score(y, s))


def average_precision(labels, scores) -> float:
    """Average precision (area under the precision-recall curve); NaN without positives."""
    y, s = _as_arrays(labels, scores)
    if y.sum() == 0:
        return float("nan")
    return float(skm.average_precision_score(y, s))


def bootstrap_ci(
    labels,
    scores,
    metric_fn: Callable[[np.ndarray, np.ndarray], float] = roc_auc,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric_fn(labels, scores)``.

    Pairs are resampled with replacement within each label, so every replicate keeps the
    original number of positives and negatives (a ROC-AUC replicate is never undefined).

    Args:
        labels: 0/1 labels.
        scores: scores, higher = more likely derived.
        metric_fn: ``f(labels, scores) -> float``, e.g. :func:`roc_auc`.
        n_boot: number of bootstrap replicates.
        seed: seed of the resampling; the same seed gives the same interval.
        alpha: 1 - coverage (0.05 gives a 95 % interval).

    Returns:
        ``(low, high)``; ``(nan, nan)`` when every replicate is NaN.
    """
    if not 0 < alpha < 1 or n_boot < 1:
        raise ValueError(f"need 0 < alpha < 1 and n_boot >= 1; got alpha={alpha}, n_boot={n_boot}")
    y, s = _as_arrays(labels, scores)
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(y == k) for k in (0, 1)]
    values = np.empty(n_boot)
    for i in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g)) for g in strata if len(g)])
        values[i] = metric_fn(y[idx], s[idx])
    if np.isnan(values).all():
        return float("nan"), float("nan")
    low, high = np.nanquantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _check_pairs(df: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    """Raise a ValueError naming the table and its missing columns."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; it has {list(df.columns)}")


def _natural_key(value) -> list:
    """Sort ``slice+2mm`` before ``slice+16mm``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(value))]


def auc_by(df: pd.DataFrame, score_col: str = "score", by: str = "negative_kind") -> pd.DataFrame:
    """ROC-AUC of all positives against the negatives of each group.

    Args:
        df: pair table with ``label``, ``score_col`` and ``by``.
        score_col: column holding the scores.
        by: column that groups the negatives, e.g. ``negative_kind`` (easy/hard) or
            ``hard_detail`` (``slice+4mm``, ``tile+1``, ...). Missing values count as ``""``.

    Returns:
        One row per group of negatives: ``by``, ``n_pos``, ``n_neg``, ``roc_auc``.
    """
    _check_pairs(df, "pair table", ["label", score_col, by])
    pos = df[df["label"] == 1]
    neg = df[df["label"] == 0]
    rows = []
    groups = neg[by].fillna("").astype(str)
    for value in sorted(groups.unique(), key=_natural_key):
        sub = pd.concat([pos, neg[groups == value]])
        auc = roc_auc(sub["label"].to_numpy(), sub[score_col].to_numpy())
        n_neg = int((groups == value).sum())
        rows.append({by: value, "n_pos": len(pos), "n_neg": n_neg, "roc_auc": auc})
    return pd.DataFrame(rows, columns=[by, "n_pos", "n_neg", "roc_auc"])


def _called_rate(df, threshold, score_col, by, label, name) -> pd.DataFrame:
    """Share of the pairs with ``label`` scored ``>= threshold``, per value of ``by``."""
    _check_pairs(df, "pair table", ["label", score_col, by])
    part = df[df["label"] == label]
    hit = (part[score_col] >= threshold).groupby(part[by].fillna("").astype(str))
    out = pd.DataFrame({"n": hit.size(), name: hit.mean()}).reset_index(names=by)
    return out.sort_values(by, key=lambda c: c.map(_natural_key)).reset_index(drop=True)


def recall_by_family(
    df: pd.DataFrame, threshold: float, score_col: str = "score", by: str = "family"
) -> pd.DataFrame:
    """Share of positives called derived (``score >= threshold``) per alteration family."""
    return _called_rate(df, threshold, score_col=score_col, by=by, label=1, name="recall")


def fpr_by_kind(
    df: pd.DataFrame, threshold: float, score_col: str = "score", by: str = "negative_kind"
) -> pd.DataFrame:
    """False-positive rate (negatives with ``score >= threshold``) per negative kind."""
    return _called_rate(df, threshold, score_col=score_col, by=by, label=0, name="fpr")


def evaluate(
    val_df: pd.DataFrame,
    test_df: pd.DataFrame,
    model: str,
    n_boot: int = 1000,
    rule: str = "f1",
    score_col: str = "score",
    seed: int = 0,
) -> dict:
    """One results row for a model: threshold chosen on validation, everything else on test.

    Args:
        val_df: validation pairs with ``label`` and ``score_col``.
        test_df: test pairs with ``label``, ``negative_kind`` and ``score_col``.
        model: name written in the ``model`` column.
        n_boot: bootstrap replicates for the ROC-AUC interval.
        rule: threshold rule, see :func:`choose_threshold`.
        score_col: column holding the scores in both tables.
        seed: bootstrap seed.

    Returns:
        Dict with model, status, threshold, accuracy, f1, precision, recall, roc_auc,
        roc_auc_lo, roc_auc_hi, roc_auc_easy, roc_auc_hard, average_precision, n_test.
    """
    _check_pairs(val_df, "val_df", ["label", score_col])
    _check_pairs(test_df, "test_df", ["label", "negative_kind", score_col])
    threshold = choose_threshold(val_df["label"], val_df[score_col], rule=rule)
    y, s = test_df["label"].to_numpy(), test_df[score_col].to_numpy()
    low, high = bootstrap_ci(y, s, metric_fn=roc_auc, n_boot=n_boot, seed=seed)
    by_kind = auc_by(test_df, score_col=score_col).set_index("negative_kind")["roc_auc"]
    return {
        "model": model,
        "status": "ok",
        "threshold": threshold,
        **binary_metrics(y, s, threshold),
        "roc_auc": roc_auc(y, s),
        "roc_auc_lo": low,
        "roc_auc_hi": high,
        "roc_auc_easy": float(by_kind.get("easy", np.nan)),
        "roc_auc_hard": float(by_kind.get("hard", np.nan)),
        "average_precision": average_precision(y, s),
        "n_test": len(test_df),
    }


def retrieval_metrics(
    similarity: np.ndarray, gt_ref_index: np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Copy-detection retrieval metrics as in the DISC21 matching track.

    Top-k accuracy: share of queries that have a source whose source reference ranks within
    the first ``k`` references. Ties count against the query (rank = number of references
    scoring at least as high as the source, minus one), as in isc2021's ``find_tp_ranks``.

    Micro average precision (muAP): every (query, reference) similarity is one prediction;
    predictions of all queries are pooled and sorted by decreasing score, with equal scores
    ordered negatives first (the pessimistic order of isc2021, so constant scores cannot earn
    a good AP). Then ``muAP = sum_i P(i) * rel(i) / n_matched`` where ``P(i)`` is the precision
    of the first ``i`` predictions, ``rel(i)`` is 1 for a true (query, source) pair and
    ``n_matched`` is the number of queries that have a source. Distractor queries (no source)
    only add false positives, which is how DISC21 penalises confident wrong matches. Without
    ties this equals :func:`sklearn.metrics.average_precision_score` on the flattened matrix.

    Args:
        similarity: (Q, R) scores, higher = more similar.
        gt_ref_index: (Q,) index of each query's source reference, -1 for distractors.
        ks: cut-offs for top-k accuracy.

    Returns:
        Dict with ``top{k}`` per k, ``muap``, ``n_queries`` and ``n_matched``.
    """
    sim = np.asarray(similarity, dtype=float)
    gt = np.asarray(gt_ref_index)
    if sim.ndim != 2 or gt.shape != (sim.shape[0],):
        raise ValueError(
            f"similarity must be (Q, R) and gt_ref_index (Q,); got {sim.shape} and {gt.shape}"
        )
    if np.isnan(sim).any():
        raise ValueError("similarity contains NaN")
    if ((gt < -1) | (gt >= sim.shape[1])).any():
        raise ValueError(f"gt_ref_index values must be -1 or in [0, {sim.shape[1]}); got {gt}")
    matched = np.flatnonzero(gt >= 0)
    true_score = sim[matched, gt[matched]]
    rank = (sim[matched] >= true_score[:, None]).sum(axis=1) - 1
    out: dict[str, float] = {}
    for k in ks:
        out[f"top{k}"] = float((rank < k).mean()) if len(matched) else float("nan")
    relevant = np.zeros_like(sim, dtype=int)
    relevant[matched, gt[matched]] = 1
    out["muap"] = _micro_ap(sim.ravel(), relevant.ravel(), n_positives=len(matched))
    out["n_queries"] = int(sim.shape[0])
    out["n_matched"] = int(len(matched))
    return out


def _micro_ap(scores: np.ndarray, relevant: np.ndarray, n_positives: int) -> float:
    """AP of pooled predictions, ties ordered negatives first, recall over ``n_positives``."""
    if n_positives == 0:
        return float("nan")
    order = np.lexsort((relevant, -scores))  # primary: score descending; then negatives first
    rel = relevant[order]
    precision = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float(precision[rel == 1].sum() / n_positives)


def _interval(point: float, low: float, high: float, digits: int = 3) -> str:
    """``0.912 [0.88, 0.94]``; the point alone when the interval is missing."""
    if pd.isna(point):
        return ""
    if pd.isna(low) or pd.isna(high):
        return f"{point:.{digits}f}"
    return f"{point:.{digits}f} [{low:.{digits - 1}f}, {high:.{digits - 1}f}]"


def metrics_table(rows: Sequence[dict]) -> pd.DataFrame:
    """Results rows as a table: :func:`evaluate` rows and ``{"model", "status": "not run: .."}``.

    Columns that :func:`evaluate` fills are always present (NaN for models that did not run),
    so a table of only skipped baselines still has the same shape.
    """
    columns = [
        "model", "status", "threshold", "accuracy", "f1", "precision", "recall", "roc_auc",
        "roc_auc_lo", "roc_auc_hi", "roc_auc_easy", "roc_auc_hard", "average_precision", "n_test",
    ]  # fmt: skip
    table = pd.DataFrame(list(rows))
    for col in columns:
        if col not in table.columns:
            table[col] = np.nan
    if table["model"].isna().any():
        raise ValueError("every results row needs a 'model'")
    table["status"] = table["status"].fillna("ok")
    return table[columns + [c for c in table.columns if c not in columns]]


def format_table(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Human-readable copy: ROC-AUC with its interval, other numbers rounded to ``digits``."""
    # long reasons (a model that did not run) stay whole in the CSV; tables show their start
    status = table["status"].map(lambda t: t if len(t) <= 80 else t[:77] + "...")
    shown = pd.DataFrame({"model": table["model"], "status": status})
    auc = zip(table["roc_auc"], table["roc_auc_lo"], table["roc_auc_hi"], strict=True)
    shown["ROC-AUC [95% CI]"] = [_interval(p, lo, hi, digits=digits) for p, lo, hi in auc]
    for col in ("roc_auc_easy", "roc_auc_hard", "average_precision", "accuracy", "f1",
                "precision", "recall", "threshold"):  # fmt: skip
        shown[col] = table[col].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    shown["n_test"] = table["n_test"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    return shown


def to_markdown(table: pd.DataFrame, path: str | Path | None = None, digits: int = 3) -> str:
    """Markdown (GitHub pipe table) of :func:`format_table`; also written to ``path`` if given."""
    shown = format_table(table, digits=digits)
    lines = [
        "| " + " | ".join(shown.columns) + " |",
        "|" + "|".join("---" for _ in shown.columns) + "|",
    ]  # written by hand because DataFrame.to_markdown needs the optional tabulate package
    for row in shown.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", r"\|") for v in row) + " |")
    text = "\n".join(lines) + "\n"
    if path is not None:
        Path(path).write_text(text)
    return text


def to_latex(table: pd.DataFrame, path: str | Path | None = None, digits: int = 3) -> str:
    """LaTeX tabular of :func:`format_table` (booktabs rules); also written to ``path``."""
    shown = format_table(table, digits=digits)
    text = shown.to_latex(index=False, escape=True, column_format="l" * len(shown.columns))
    if path is not None:
        Path(path).write_text(text)
    return text
