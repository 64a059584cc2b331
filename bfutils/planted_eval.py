"""Score any method on a planted benchmark (:mod:`bfutils.planted`) from its pair scores.

A method hands in a table of ``(a, b, score)`` over the benchmark's panel files (names or
paths; higher = more likely reuse) and, if it decides, a threshold. Scores are taken as
symmetric (the larger of ``(a, b)`` and ``(b, a)`` counts) and pairs a method did not report
score ``-inf``, i.e. never found.

Numbers, per alteration family, per panel-size band of the query, per content (:func:`content_of`)
and, for queries that show part of their source, per area band (30-60 %, 60-100 %):

- ``top1`` / ``recall10``: for each planted query panel, every other panel is a candidate,
  ranked by score; the share of queries whose source ranks first / within the first 10
  (ties count against the query, as in isc2021);
- ``muap``: micro average precision over all unordered pairs of panels, DISC21 style: the
  group's planted pairs are the positives, every pair that is not planted is a negative, and
  other groups' planted pairs are left out. A method that ranks a pair of siblings above a
  blurred copy pays for it here;
- ``recall_at_threshold``: share of the group's planted pairs scored at or above the threshold;
- on the ``all`` row, ``false_per_1000``: negative pairs at or above the threshold per 1,000
  panels (what a proofreader would have to dismiss), ``false_sibling_per_1000`` (those between
  siblings: same acquisition, smear or volume slab) and ``false_per_1000_at_r90`` (negative
  pairs scoring at least the score that recovers 90 % of the planted pairs: comparable across
  methods without a threshold of their own), and ``roc_auc``: the planted pairs against every
  other pair (unscored pairs tied at the bottom), the pair-classification view of the same
  scores.

Both top-k and muAP come from :func:`bfutils.metrics.retrieval_metrics`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bfutils.metrics import retrieval_metrics
from bfutils.planted import SIZE_BANDS, area_band

COLUMNS = (
    "method", "status", "group_kind", "group", "n", "top1", "recall10", "muap",
    "recall_at_threshold", "false_per_1000", "false_sibling_per_1000", "false_per_1000_at_r90",
    "threshold", "roc_auc",
)  # fmt: skip


def load_benchmark(bench_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``panels.csv`` and ``truth.csv`` tables of a benchmark folder."""
    bench = Path(bench_dir)
    for name in ("panels.csv", "truth.csv"):
        if not (bench / name).is_file():
            raise FileNotFoundError(f"{bench / name} missing: build it with bfutils.planted")
    return pd.read_csv(bench / "panels.csv"), pd.read_csv(bench / "truth.csv")


def score_matrix(scores_df: pd.DataFrame, files: list[str]) -> np.ndarray:
    """Symmetric ``(N, N)`` scores over ``files`` from a pair table; unknown pairs are ``-inf``.

    Args:
        scores_df: Columns ``a``, ``b``, ``score``; names may be paths (their file name is used).
        files: Panel file names, in the order of the rows and columns.

    Returns:
        float array with ``-inf`` on the diagonal and for pairs the table lacks.

    Raises:
        ValueError: Missing columns, NaN scores, or no row naming two known panels.
    """
    missing = {"a", "b", "score"} - set(scores_df.columns)
    if missing:
        raise ValueError(f"scores_df lacks columns {sorted(missing)}")
    index = {f: i for i, f in enumerate(files)}
    ia = scores_df["a"].map(lambda p: index.get(Path(str(p)).name, -1)).to_numpy()
    ib = scores_df["b"].map(lambda p: index.get(Path(str(p)).name, -1)).to_numpy()
    s = scores_df["score"].to_numpy(dtype=float)
    if np.isnan(s).any():
        raise ValueError("scores_df has NaN scores")
    ok = (ia >= 0) & (ib >= 0) & (ia != ib)
    if len(s) and not ok.any():
        raise ValueError("no row of scores_df names two panels of this benchmark")
    sim = np.full((len(files), len(files)), -np.inf)
    np.maximum.at(sim, (ia[ok], ib[ok]), s[ok])
    return np.maximum(sim, sim.T)


def evaluate(
    bench_dir: str | Path,
    scores_df: pd.DataFrame,
    threshold: float | None = None,
    method: str = "method",
    seen_ids: set[str] | None = None,
) -> pd.DataFrame:
    """Evaluate one method's pair scores on a planted benchmark (see the module docstring).

    Args:
        bench_dir: Folder written by :func:`bfutils.planted.build`.
        scores_df: ``a``, ``b``, ``score`` over the benchmark's panel files.
        threshold: The method's decision threshold (pairs with ``score >= threshold`` are
            flagged); None leaves the threshold columns empty.
        method: Name written in the ``method`` column.
        seen_ids: image ids a trained model saw in training; adds the ``training`` groups
            ``seen`` and ``unseen`` (planted pairs cut from such an image or not), since a
            model trained on figure panels of an image has an unfair edge on its reuse.

    Returns:
        One row per group (``group_kind`` = ``all``, ``family``, ``size_band``, ``area_band``,
        ``content``, and ``training`` with ``seen_ids``) with the columns in :data:`COLUMNS`.
    """
    panels, truth = load_benchmark(bench_dir)
    files = panels["file"].tolist()
    index = {f: i for i, f in enumerate(files)}
    sim = score_matrix(scores_df, files)
    q = truth["query"].map(index).to_numpy()
    s = truth["source"].map(index).to_numpy()
    groups = {"all": pd.Series("all", index=truth.index), "family": truth["family"]}
    groups["size_band"] = truth["size_band"]
    groups["area_band"] = area_band(truth["area_fraction"])
    if "image_id" in truth.columns:
        groups["content"] = truth["image_id"].map(content_of)
    if seen_ids is not None:
        seen = truth["image_id"].isin(seen_ids)
        groups["training"] = pd.Series(np.where(seen, "seen", "unseen"), index=truth.index)
    upper = np.triu(np.ones_like(sim, dtype=bool), k=1)
    positive = np.zeros_like(upper)
    positive[np.minimum(q, s), np.maximum(q, s)] = True
    negatives = sim[upper & ~positive]
    rows = []
    for kind, labels in groups.items():
        for name in _ordered(kind, labels):
            pick = (labels == name).to_numpy()
            row = {"method": method, "status": "ok", "group_kind": kind, "group": name}
            row |= _group_metrics(sim, q[pick], s[pick], positive, upper, threshold)
            rows.append(row)
    rows[0] |= _false_pairs(sim, negatives, panels, positive, upper, threshold, q, s)
    table = pd.DataFrame(rows)
    return table.reindex(columns=COLUMNS)


def content_of(image_id: str) -> str:
    """What a planted pair shows: ``dsb2018``, ``bccd``, ``embedded:mni`` ... ``graphics:blot``.

    The source, and for the embedded and drawn sources their kind (MRI, EPI, scikit-image
    tile; blot, gel, dot plot), which behave very differently for a finder.
    """
    parts = image_id.split(":")
    return ":".join(parts[:2]) if parts[0] in ("embedded", "graphics") else parts[0]


def _ordered(kind: str, labels: pd.Series) -> list[str]:
    present = set(labels)
    if kind == "size_band":
        return [b for b in SIZE_BANDS if b in present]
    if kind == "area_band":
        return [b for b in ("30-60%", "60-100%") if b in present]
    return sorted(present)


def _group_metrics(sim, q, s, positive, upper, threshold) -> dict:
    """top1, recall@10, muAP and recall at the threshold of the pairs ``(q[i], s[i])``."""
    ranks = retrieval_metrics(sim[q], s, ks=(1, 10))
    # muAP over unordered pairs: row min(q, s) holds the pair in column max(q, s); the upper
    # triangle holds every other pair once; other groups' positives are left out (-inf).
    lo, hi = np.minimum(q, s), np.maximum(q, s)
    pairs = np.where(upper & ~positive, sim, -np.inf)
    pairs[lo, hi] = sim[lo, hi]
    gt = np.full(len(sim), -1)
    gt[lo] = hi
    out = {
        "n": len(q),
        "top1": ranks["top1"],
        "recall10": ranks["top10"],
        "muap": retrieval_metrics(pairs, gt, ks=(1,))["muap"],
    }
    if threshold is not None:
        out["recall_at_threshold"] = float((sim[q, s] >= threshold).mean())
        out["threshold"] = float(threshold)
    return out


def _false_pairs(sim, negatives, panels, positive, upper, threshold, q, s) -> dict:
    """False pairs per 1,000 panels: at the threshold, between siblings, and at 90 % recall."""
    per = 1000 / len(panels)
    found = np.sort(sim[q, s])
    r90 = found[int(np.floor(0.1 * len(found)))] if len(found) else np.inf
    # A method that never scores 10 % of the planted pairs cannot reach 90 % recall: inf.
    at_r90 = np.inf if r90 == -np.inf else float((negatives >= r90).sum() * per)
    out = {"false_per_1000_at_r90": at_r90, "roc_auc": _pair_roc_auc(sim[q, s], negatives)}
    if threshold is not None:
        group = panels["group"].to_numpy()
        sibling = (group[:, None] == group[None, :]) & upper & ~positive
        out["false_per_1000"] = float((negatives >= threshold).sum() * per)
        out["false_sibling_per_1000"] = float((sim[sibling] >= threshold).sum() * per)
    return out


def _pair_roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """ROC-AUC of the planted pairs against every other pair of panels (pairs a method did not
    score are ``-inf``: tied at the bottom, counted half), by ranks (Mann-Whitney U)."""
    if not len(positives) or not len(negatives):
        return float("nan")
    neg = np.sort(negatives)
    below = np.searchsorted(neg, positives, side="left")
    ties = np.searchsorted(neg, positives, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(positives) * len(negatives)))


def not_run(method: str, reason: str) -> pd.DataFrame:
    """The ``all`` row of a method that could not run, with the reason in ``status``."""
    row = {"method": method, "status": f"not run: {reason}", "group_kind": "all", "group": "all"}
    return pd.DataFrame([row]).reindex(columns=COLUMNS)


def markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """Markdown tables: the overall row per method, then top-1 / muAP per group and method."""
    fmt = lambda v: "" if pd.isna(v) else f"{v:.{digits}f}"  # noqa: E731
    overall = table[table["group_kind"] == "all"]
    cols = [
        "method",
        "status",
        "top1",
        "recall10",
        "muap",
        "recall_at_threshold",
        "false_per_1000",
        "false_sibling_per_1000",
        "false_per_1000_at_r90",
        "threshold",
        "roc_auc",
    ]
    if "wall_s" in table.columns:
        cols.append("wall_s")
    lines = ["## Overall", "", _pipe(overall, cols, fmt), ""]
    ran = table[table["status"] == "ok"]
    for metric in ("top1", "recall10", "muap"):
        wide = ran[ran["group_kind"] != "all"].pivot_table(
            index=["group_kind", "group"], columns="method", values=metric, sort=False
        )
        n = (
            ran[ran["group_kind"] != "all"]
            .groupby(["group_kind", "group"], sort=False)["n"]
            .first()
        )
        wide = wide.reset_index().assign(n=n.to_numpy().astype(int))
        lines += [f"## {metric} per group", "", _pipe(wide, list(wide.columns), fmt), ""]
    return "\n".join(lines)


def by_content(table: pd.DataFrame, digits: int = 3) -> str:
    """Markdown: partner at rank 1 / muAP per content kind (:func:`content_of`, and all
    planted pairs) and method, one column per method that ran, with the planted pair count."""
    ran = table[(table["status"] == "ok") & table["group_kind"].isin(["all", "content"])]
    twice = ran.duplicated(["method", "group_kind", "group"])
    if twice.any():
        raise ValueError(
            f"method(s) {sorted(set(ran.loc[twice, 'method']))} appear in more than one table; "
            "give each method once"
        )
    methods = list(dict.fromkeys(ran["method"]))
    groups = list(dict.fromkeys(ran["group"]))
    head = ["content (planted pairs)", *methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in groups:
        rows = ran[ran["group"] == group].set_index("method")
        cells = [f"{group} ({int(rows['n'].iloc[0])})"]
        for m in methods:
            cells.append(
                f"{rows.at[m, 'top1']:.{digits}f} / {rows.at[m, 'muap']:.{digits}f}"
                if m in rows.index
                else "-"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


SUMMARY_COLUMNS = {"top1": "rank 1", "recall10": "recall@10", "muap": "muAP",
                   "false_per_1000": "false / 1,000", "partial": "rank 1, partial 30-60%",
                   "small": "rank 1, < 64 px", "roc_auc": "pair ROC-AUC"}  # fmt: skip


def summary(table: pd.DataFrame, digits: int = 3) -> str:
    """One markdown row per method (what the README shows): partner at rank 1, recall@10,
    muAP, false pairs per 1,000 panels at the method's threshold, and rank 1 on partial crops
    of 30-60% of the source and on panels under 64 px, and the ROC-AUC of the planted pairs
    against all other pairs; a method that did not run says why."""
    fmt = lambda v: "-" if pd.isna(v) else f"{v:.{digits}f}"  # noqa: E731
    rows = []
    for method, part in table.groupby("method", sort=False):
        overall = part[part["group_kind"] == "all"].iloc[0]
        if overall["status"] != "ok":
            rows.append([method, overall["status"]] + [""] * (len(SUMMARY_COLUMNS) - 1))
            continue
        partial = part[(part["group_kind"] == "area_band") & (part["group"] == "30-60%")]
        small = part[(part["group_kind"] == "size_band") & (part["group"] == "<64")]
        values = [overall["top1"], overall["recall10"], overall["muap"]]
        values += [overall["false_per_1000"]]
        values += [partial["top1"].iloc[0] if len(partial) else np.nan]
        values += [small["top1"].iloc[0] if len(small) else np.nan]
        values += [overall.get("roc_auc", np.nan)]
        false = values[3]
        cells = [fmt(v) for v in values]
        cells[3] = "-" if pd.isna(false) else f"{false:.0f}"
        rows.append([method] + cells)
    head = ["method", *SUMMARY_COLUMNS.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _pipe(df: pd.DataFrame, cols: list[str], fmt) -> str:
    cell = lambda v: fmt(v) if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df[cols].itertuples(index=False):
        lines.append("| " + " | ".join(cell(v).replace("|", r"\|") for v in row) + " |")
    return "\n".join(lines)
