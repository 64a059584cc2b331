"""Tables and figure data of notebook 05, built from the run's prediction files only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from bfutils import metrics, pairs, paths, registry, results


def main_table(preds: dict, status: pd.DataFrame | None, n_boot: int, seed: int) -> pd.DataFrame:
    """One row per model: metrics of those that ran, ``not run: ...`` for the others."""
    rows = [results.summary(preds[m], m, n_boot=n_boot, seed=seed) for m in registry.ordered(preds)]
    if status is not None:
        for r in status.itertuples():
            if r.model not in preds:
                rows.append({"model": r.model, "status": r.status})
    table = metrics.metrics_table(rows)
    if status is not None:
        table = table.merge(status[["model", "seconds"]], on="model", how="left")
    return table


def thresholds(table: pd.DataFrame) -> dict:
    """Validation-chosen threshold per model that ran."""
    ok = table[table["status"] == "ok"]
    return dict(zip(ok["model"], ok["threshold"], strict=True))


def _test(preds: dict) -> dict:
    return {m: p[p["split"] == "test"] for m, p in preds.items()}


def roc_data(preds: dict) -> pd.DataFrame:
    """Test ROC curve points of every model (``model, fpr, tpr, auc``)."""
    frames = []
    for m, t in _test(preds).items():
        fpr, tpr, _ = roc_curve(t["label"], t["score"])
        auc = metrics.roc_auc(t["label"].to_numpy(), t["score"].to_numpy())
        frames.append(pd.DataFrame({"model": m, "fpr": fpr, "tpr": tpr, "auc": auc}))
    return pd.concat(frames, ignore_index=True)


def score_data(preds: dict) -> pd.DataFrame:
    """Test scores with the pair kind (positive / easy / hard)."""
    frames = []
    for m, t in _test(preds).items():
        kind = np.where(t["label"] == 1, "positive", t["negative_kind"])
        frames.append(pd.DataFrame({"model": m, "kind": kind, "score": t["score"].to_numpy()}))
    return pd.concat(frames, ignore_index=True)


def _per_model(fn, preds: dict, thr: dict) -> pd.DataFrame:
    """``fn(test pairs, threshold)`` for every model that ran, stacked (long format)."""
    frames = [fn(t, threshold=thr[m]).assign(model=m) for m, t in _test(preds).items() if m in thr]
    return pd.concat(frames, ignore_index=True)


def recall_by_family(preds: dict, thr: dict) -> pd.DataFrame:
    """Recall per alteration family per model at its validation threshold (long format)."""
    return _per_model(metrics.recall_by_family, preds, thr)


def fpr_by_kind(preds: dict, thr: dict) -> pd.DataFrame:
    """False-positive rate on easy vs hard negatives per model at its validation threshold."""
    return _per_model(metrics.fpr_by_kind, preds, thr)


def auc_by_detail(preds: dict) -> pd.DataFrame:
    """Test ROC-AUC against each hard-negative detail, coarsened to its distance class."""
    frames = []
    for m, t in _test(preds).items():
        t = t.assign(detail=t["hard_detail"].map(pairs.coarse_detail))
        frames.append(metrics.auc_by(t, by="detail").assign(model=m))
    return pd.concat(frames, ignore_index=True)


def hardest(preds: dict, thr: dict, model: str, n: int = 6) -> pd.DataFrame:
    """The highest-scoring negatives and lowest-scoring positives of one model (test)."""
    t = _test(preds)[model]
    fp = t[t["label"] == 0].nlargest(n, "score").assign(error="false positive")
    fn = t[t["label"] == 1].nsmallest(n, "score").assign(error="false negative")
    out = pd.concat([fp, fn])
    return out.assign(threshold=thr.get(model, np.nan))


def write_tables(table: pd.DataFrame, folder: Path | None = None) -> dict:
    """``metrics_table.csv``, ``.md`` and ``.tex`` in ``figures/``."""
    folder = Path(folder or paths.FIGURES)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "metrics_table.csv", index=False)
    metrics.to_markdown(table, folder / "metrics_table.md")
    metrics.to_latex(table, folder / "metrics_table.tex")
    return {k: folder / f"metrics_table.{k}" for k in ("csv", "md", "tex")}


README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


def update_readme(
    run_dir: Path, table_md: str, extra_md: str = "", readme: Path | None = None,
    block: str = "results",
):  # fmt: skip
    """Replace a README block (default the results block) with the tables of ``run_dir``
    (generated, not typed)."""
    timings = Path(run_dir) / "timings.tsv"
    when = pd.Timestamp.fromtimestamp(Path(run_dir).stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    profile = Path(run_dir).name.rsplit("-", 2)[0]
    repeat = "make pipeline && make results" if block == "results" else (
        f"make pipeline PROFILE={profile} && "
        f".venv/bin/python -m bfutils.runs publish RUN --block {block}"
    )  # fmt: skip
    lines = [
        f"Run `runs/{Path(run_dir).name}` ({when}), written by notebook 05 "
        "from that run's prediction files; its parameters and package versions are in the "
        f"run folder's `params_*.json`. Repeat with `{repeat}`.",
        "",
    ]
    lines += [table_md.strip(), ""]
    if extra_md:
        lines += [extra_md.strip(), ""]
    if timings.exists():
        t = pd.read_csv(timings, sep="\t")
        lines += [
            "Notebook wall times: "
            + ", ".join(f"{r.notebook} {r.seconds:.0f} s" for r in t.itertuples())
            + ".",
            "",
        ]
    replace_block(block, "\n".join(lines), readme=readme)


def replace_block(name: str, body: str, readme: Path | None = None) -> Path:
    """Replace the README text between ``<!-- name:start -->`` and ``<!-- name:end -->``.

    Raises:
        ValueError: the README has no such block.
    """
    readme = Path(readme or paths.ROOT / "README.md")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    readme.write_text(head + start + "\n\n" + body.strip() + "\n\n" + end + rest.split(end, 1)[1])
    return readme


def markdown(df: pd.DataFrame) -> str:
    """A GitHub pipe table of any small frame (pandas' own needs the tabulate package)."""
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
