"""Saving figures: every PNG gets the data it plots as a CSV beside it."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from bfutils import paths


def save(fig, name: str, data: pd.DataFrame, folder: Path | None = None) -> Path:
    """Save ``fig`` as ``<name>.png`` and ``data`` as ``<name>.csv`` in ``figures/``.

    Args:
        fig: a matplotlib figure.
        name: file stem, e.g. ``"01_gallery"``.
        data: the numbers or records the figure shows.
        folder: override for the output folder (default :data:`bfutils.paths.FIGURES`).

    Returns:
        Path of the PNG.
    """
    folder = Path(folder or paths.FIGURES)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    data.to_csv(folder / f"{name}.csv", index=False)
    plt.close(fig)
    return png


def image_grid(images, titles, ncols: int = 8, size: float = 1.6):
    """A grid of images with small titles; returns the figure."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.25)))
    for ax in getattr(axes, "flat", [axes]):
        ax.axis("off")
    for ax, img, title in zip(getattr(axes, "flat", [axes]), images, titles, strict=False):
        ax.imshow(img)
        ax.set_title(title, fontsize=6)
    fig.tight_layout()
    return fig


def gallery(manifest: pd.DataFrame, images, per_source: int = 8, seed: int = 0):
    """Sample images of every source name; returns ``(fig, data)``."""
    shuffled = manifest.reset_index().sample(frac=1.0, random_state=seed)
    rows = (
        shuffled.groupby("source_name").head(per_source).sort_values("source_name", kind="stable")
    )
    titles = [f"{r.source_name}\n{r.image_id[-18:]}" for r in rows.itertuples()]
    fig = image_grid([images[i] for i in rows["index"]], titles, ncols=per_source)
    return fig, rows.drop(columns="index")


def counts(table: pd.DataFrame, x: str, y: str, hue: str, title: str):
    """A seaborn bar chart of ``table``; returns the figure."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.barplot(data=table, x=x, y=y, hue=hue, ax=ax)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def pair_strip(pairs_df: pd.DataFrame, a, b, title_fn, ncols: int = 6):
    """Show pairs as columns of two images (a above b); returns the figure."""
    n = len(pairs_df)
    fig, axes = plt.subplots(2, n, figsize=(n * 1.7, 3.9), squeeze=False)
    for k, row in enumerate(pairs_df.itertuples()):
        axes[0, k].imshow(a[k])
        axes[1, k].imshow(b[k])
        axes[0, k].set_title(title_fn(row), fontsize=6)
        axes[0, k].axis("off")
        axes[1, k].axis("off")
    fig.tight_layout()
    return fig


def history(log: pd.DataFrame, title: str = ""):
    """Loss terms and validation ROC-AUC per epoch, one panel each; returns the figure."""
    import seaborn as sns

    loss_cols = [c for c in log.columns if c.startswith("loss_")]
    long = log.melt(id_vars=["phase", "epoch"], value_vars=loss_cols, var_name="term")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    sns.lineplot(data=long, x="epoch", y="value", hue="term", style="phase", ax=axes[0])
    axes[0].set_yscale("log")
    axes[0].set_title(f"{title} training loss terms")
    sns.lineplot(data=log, x="epoch", y="val_roc_auc", hue="phase", marker="o", ax=axes[1])
    axes[1].set_title(f"{title} validation ROC-AUC")
    fig.tight_layout()
    return fig


def line_styles(n: int) -> list[dict]:
    """``n`` distinct (colour, dash) styles: 10 colourblind-safe colours, then the same colours
    dashed, dotted, dash-dotted, so no two lines look alike however many models there are."""
    import seaborn as sns

    colours = sns.color_palette("colorblind", 10)
    dashes = ["-", "--", ":", "-."]
    return [{"color": colours[i % 10], "ls": dashes[(i // 10) % 4]} for i in range(n)]


def roc_curves(curves: pd.DataFrame):
    """All models' test ROC curves on one plot (``curves``: model, fpr, tpr, auc)."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    labels = curves.groupby("model")["auc"].first().sort_values(ascending=False)
    for name, style in zip(labels.index, line_styles(len(labels)), strict=True):
        c = curves[curves["model"] == name]
        ax.plot(c["fpr"], c["tpr"], label=f"{name} ({labels[name]:.3f})", **style)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="Test ROC curves")
    ax.legend(fontsize=7, loc="lower right")
    sns.despine(fig)
    return fig


def score_distributions(scores: pd.DataFrame, models: list[str]):
    """Score distributions by pair kind (positive / easy / hard), one panel per model."""
    import seaborn as sns

    n = len(models)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    for ax, name in zip(axes[0], models, strict=True):
        sub = scores[scores["model"] == name]
        sns.histplot(data=sub, x="score", hue="kind", stat="density", common_norm=False,
                     element="step", bins=30, ax=ax)  # fmt: skip
        ax.set_title(name)
    fig.tight_layout()
    return fig


def heatmap(table: pd.DataFrame, title: str, fmt: str = ".2f"):
    """A seaborn heatmap of a pivoted table (rows x columns of numbers)."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * table.shape[1], 0.9 + 0.35 * table.shape[0]))
    sns.heatmap(table, annot=True, fmt=fmt, cmap="viridis", vmin=0, vmax=1, ax=ax,
                annot_kws={"fontsize": 7})  # fmt: skip
    ax.set_title(title)
    fig.tight_layout()
    return fig
