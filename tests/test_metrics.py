"""Tests for bfutils.metrics against small hand-computed examples."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu
from sklearn.metrics import average_precision_score

from bfutils import metrics

# labels and scores whose threshold rules disagree (worked out by hand in the tests below):
# predict ">= t" for t = 0.5, 0.4, 0.3, 0.2, 0.1 gives (tp, fp) = (1,0) (2,0) (2,1) (3,1) (3,2)
LABELS = [0, 1, 0, 1, 1]
SCORES = [0.1, 0.2, 0.3, 0.4, 0.5]


def pair_table(pos, easy, hard, hard_detail=None, family=None) -> pd.DataFrame:
    """Pair table from lists of positive, easy-negative and hard-negative scores."""
    n = len(pos) + len(easy) + len(hard)
    return pd.DataFrame(
        {
            "pair_id": [f"p{i}" for i in range(n)],
            "label": [1] * len(pos) + [0] * (len(easy) + len(hard)),
            "family": (family or ["crop"] * len(pos)) + [""] * (len(easy) + len(hard)),
            "negative_kind": [""] * len(pos) + ["easy"] * len(easy) + ["hard"] * len(hard),
            "hard_detail": [""] * (len(pos) + len(easy)) + (hard_detail or ["tile+1"] * len(hard)),
            "score": list(pos) + list(easy) + list(hard),
        }
    )


def test_roc_auc_hand_example_and_single_class_nan():
    # pairs (pos, neg): 0.35>0.1 yes, 0.35>0.4 no, 0.8 beats both -> 3 of 4
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert math.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


def test_roc_auc_equals_mann_whitney_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = rng.integers(0, 6, 200) + labels  # integer scores: many ties
    u = mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    expected = u / ((labels == 1).sum() * (labels == 0).sum())
    assert metrics.roc_auc(labels, scores) == pytest.approx(expected)


def test_average_precision_hand_example():
    # ranked: 0.8 (pos, P=1), 0.4 (neg), 0.35 (pos, P=2/3) -> AP = (1 + 2/3) / 2
    assert metrics.average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(5 / 6)
    assert math.isnan(metrics.average_precision([0, 0], [0.1, 0.2]))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("f1", 0.15),  # t=0.2: F1 = 6/7, the best; halfway to the next lower score 0.1
        ("f0.5", 0.35),  # t=0.4: F0.5 = 2.5/2.75 beats t=0.2: 3.75/4.75 (F1 prefers 0.2)
        ("youden", 0.35),  # t=0.4: TPR 2/3 - FPR 0 beats t=0.2: 1 - 1/2
        ("accuracy", 0.35),  # t=0.4 and t=0.2 both give 4/5; the higher threshold wins
    ],
)
def test_choose_threshold_rules(rule, expected):
    assert metrics.choose_threshold(LABELS, SCORES, rule=rule) == pytest.approx(expected)


def test_choose_threshold_rejects_bad_input():
    with pytest.raises(ValueError, match="rule"):
        metrics.choose_threshold(LABELS, SCORES, rule="auc")
    with pytest.raises(ValueError, match="both classes"):
        metrics.choose_threshold([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        metrics.choose_threshold([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="equal length"):
        metrics.choose_threshold([0, 1, 1], [0.1, 0.2])


@pytest.mark.parametrize(
    ("max_false", "expected"),
    [
        (0, 0.875),  # only 0.9 before the first negative (0.85): halfway to it
        (1, 0.65),  # down to 0.7: 3 positives, 1 negative
        (2, 0.65),  # 0.6 adds a negative and no positive: the higher threshold stays
        (3, 0.25),  # down to 0.4: all 4 positives, 3 negatives; halfway to 0.1
    ],
)
def test_threshold_for_false_budget(max_false, expected):
    labels = [1, 0, 1, 1, 0, 0, 1, 0]
    scores = [0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.1]
    assert metrics.threshold_for_false_budget(labels, scores, max_false) == pytest.approx(expected)


def test_threshold_for_false_budget_without_a_flaggable_positive():
    assert metrics.threshold_for_false_budget([0, 1], [0.9, 0.1], 0) == float("inf")
    with pytest.raises(ValueError, match="positive"):
        metrics.threshold_for_false_budget([0, 0], [0.9, 0.1], 1)
    with pytest.raises(ValueError, match="max_false"):
        metrics.threshold_for_false_budget([0, 1], [0.9, 0.1], -1)


def test_binary_metrics_hand_example():
    # threshold 0.15 predicts [0, 1, 1, 1, 1]: tp=3, fp=1, tn=1, fn=0
    out = metrics.binary_metrics(LABELS, SCORES, threshold=0.15)
    assert out == pytest.approx({"accuracy": 0.8, "f1": 6 / 7, "precision": 0.75, "recall": 1.0})
    nothing = metrics.binary_metrics(LABELS, SCORES, threshold=float("inf"))
    assert nothing["precision"] == 0.0 and nothing["f1"] == 0.0  # zero_division=0, no warning


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    scores = rng.normal(size=120) + labels
    point = metrics.roc_auc(labels, scores)
    first = metrics.bootstrap_ci(labels, scores, metrics.roc_auc, n_boot=200, seed=3)
    assert first[0] < point < first[1]
    assert first == metrics.bootstrap_ci(labels, scores, metrics.roc_auc, n_boot=200, seed=3)
    assert first != metrics.bootstrap_ci(labels, scores, metrics.roc_auc, n_boot=200, seed=4)
    narrow = metrics.bootstrap_ci(labels, scores, metrics.roc_auc, n_boot=200, seed=3, alpha=0.5)
    assert first[0] <= narrow[0] <= narrow[1] <= first[1]


def test_bootstrap_is_stratified():
    # one positive among many negatives: an unstratified resample would often drop it (NaN AUC)
    labels = np.array([1] + [0] * 30)
    scores = np.linspace(1, 0, 31)
    seen = []
    metrics.bootstrap_ci(labels, scores, lambda y, s: seen.append(y.sum()) or 1.0, n_boot=50)
    assert set(seen) == {1}


def test_auc_by_kind_and_detail():
    df = pair_table(
        pos=[0.9, 0.6], easy=[0.1, 0.2], hard=[0.7, 0.5, 0.95], hard_detail=["a", "a", "b"]
    )
    by_kind = metrics.auc_by(df).set_index("negative_kind")
    assert by_kind.loc["easy", "roc_auc"] == 1.0
    # hard: 0.9 beats 0.7 and 0.5, 0.6 beats 0.5 only, nobody beats 0.95 -> 3 of 6
    assert by_kind.loc["hard", "roc_auc"] == pytest.approx(0.5)
    assert by_kind.loc["hard", "n_neg"] == 3 and by_kind.loc["hard", "n_pos"] == 2
    by_detail = metrics.auc_by(df, by="hard_detail").set_index("hard_detail")["roc_auc"]
    assert by_detail.to_dict() == pytest.approx({"": 1.0, "a": 0.75, "b": 0.0})


def test_auc_by_sorts_details_naturally_and_names_missing_columns():
    df = pair_table(pos=[1.0], easy=[], hard=[0.1, 0.2], hard_detail=["slice+16mm", "slice+2mm"])
    assert metrics.auc_by(df, by="hard_detail")["hard_detail"].tolist() == [
        "slice+2mm",
        "slice+16mm",
    ]
    with pytest.raises(ValueError, match="prob"):
        metrics.auc_by(df, score_col="prob")


def test_recall_by_family_and_fpr_by_kind():
    df = pair_table(
        pos=[0.9, 0.2, 0.8, 0.7],
        easy=[0.1, 0.6],
        hard=[0.65, 0.9, 0.3],
        family=["crop", "crop", "blur", "blur"],
    )
    recall = metrics.recall_by_family(df, threshold=0.5).set_index("family")
    assert recall["recall"].to_dict() == {"blur": 1.0, "crop": 0.5}
    assert recall["n"].to_dict() == {"blur": 2, "crop": 2}
    fpr = metrics.fpr_by_kind(df, threshold=0.5).set_index("negative_kind")["fpr"]
    assert fpr.to_dict() == pytest.approx({"easy": 0.5, "hard": 2 / 3})


def test_evaluate_applies_validation_threshold_unchanged_to_test():
    val = pair_table(pos=[0.5, 0.4, 0.2], easy=[0.1], hard=[0.3])  # = LABELS/SCORES reordered
    test = pair_table(pos=[0.9, 0.14, 0.16], easy=[0.05, 0.3], hard=[0.12, 0.2])
    row = metrics.evaluate(val, test, model="toy", n_boot=50)
    assert row["threshold"] == pytest.approx(0.15)
    expected = metrics.binary_metrics(test["label"], test["score"], threshold=0.15)
    assert {k: row[k] for k in expected} == pytest.approx(expected)
    # a threshold refitted on test would be 0.16 or so; the test labels never move it
    flipped = test.assign(label=1 - test["label"], negative_kind="easy")
    assert metrics.evaluate(val, flipped, model="toy", n_boot=10)["threshold"] == row["threshold"]
    assert row["model"] == "toy" and row["status"] == "ok" and row["n_test"] == 7
    assert row["roc_auc_lo"] <= row["roc_auc"] <= row["roc_auc_hi"]
    assert row["roc_auc_easy"] == pytest.approx(metrics.auc_by(test).set_index(
        "negative_kind").loc["easy", "roc_auc"])  # fmt: skip


def test_evaluate_names_the_table_missing_a_column():
    val = pair_table(pos=[0.5], easy=[0.1], hard=[])
    with pytest.raises(ValueError, match="test_df"):
        metrics.evaluate(val, val.drop(columns="negative_kind"), model="toy", n_boot=5)


def test_retrieval_hand_example():
    sim = np.array(
        [
            [0.9, 0.1, 0.3],  # source 0 ranks first
            [0.2, 0.4, 0.8],  # source 1 ranks second
            [0.5, 0.6, 0.7],  # distractor: every prediction is false
        ]
    )
    out = metrics.retrieval_metrics(sim, np.array([0, 1, -1]), ks=(1, 2, 5))
    assert out["top1"] == 0.5 and out["top2"] == 1.0 and out["top5"] == 1.0
    # pooled: 0.9 T (P=1), 0.8 F, 0.7 F, 0.6 F, 0.5 F, 0.4 T (P=2/6) -> (1 + 1/3) / 2
    assert out["muap"] == pytest.approx(2 / 3)
    assert out["n_queries"] == 3 and out["n_matched"] == 2


def test_retrieval_ties_count_against_the_query():
    out = metrics.retrieval_metrics(np.array([[0.5, 0.5]]), np.array([0]))
    assert out["top1"] == 0.0  # tied with a wrong reference: rank 2
    assert out["muap"] == pytest.approx(0.5)  # negative sorted first among equal scores


def test_retrieval_muap_matches_sklearn_without_ties():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(30, 40))
    gt = rng.integers(-1, 40, 30)
    sim[gt >= 0, gt[gt >= 0]] += 1.5
    relevant = np.zeros_like(sim, dtype=int)
    relevant[gt >= 0, gt[gt >= 0]] = 1
    expected = average_precision_score(relevant.ravel(), sim.ravel())
    assert metrics.retrieval_metrics(sim, gt)["muap"] == pytest.approx(expected)


def test_retrieval_rejects_bad_shapes():
    with pytest.raises(ValueError, match="gt_ref_index"):
        metrics.retrieval_metrics(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="-1 or in"):
        metrics.retrieval_metrics(np.zeros((2, 3)), np.array([0, 3]))


def test_tables_format_intervals_and_keep_skipped_models(tmp_path):
    rows = [
        {"model": "sift", "status": "ok", "roc_auc": 0.9123, "roc_auc_lo": 0.881,
         "roc_auc_hi": 0.9402, "f1": 0.8, "n_test": 100},
        {"model": "clip", "status": "not run: no weights offline"},
    ]  # fmt: skip
    table = metrics.metrics_table(rows)
    assert list(table["model"]) == ["sift", "clip"] and "roc_auc_hard" in table.columns
    md = metrics.to_markdown(table, path=tmp_path / "t.md")
    assert "| sift | ok | 0.912 [0.88, 0.94] |" in md
    assert "not run: no weights offline" in md
    assert (tmp_path / "t.md").read_text() == md
    tex = metrics.to_latex(table, path=tmp_path / "t.tex")
    assert "0.912 [0.88, 0.94]" in tex and r"\toprule" in tex
    with pytest.raises(ValueError, match="model"):
        metrics.metrics_table([{"status": "ok"}])
