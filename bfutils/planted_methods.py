"""Methods scored on the planted benchmark, and the run that puts them in one table.

Each method maps a benchmark folder to ``(scores_df, threshold)``: a table ``a, b, score`` over
the panel files and its own decision threshold (or None). Methods:

- ``finder``: :mod:`bfutils.find` when it is importable. Its function
  ``find(folder, cache=DIR, show_progress=True)`` returning the pair table (threshold in
  ``df.attrs["threshold"]``) is used if present, with a fresh descriptor cache; else the
  command ``python -m bfutils.find PANELS --out DIR`` and its ``pairs.csv`` (threshold from a
  ``threshold`` column, or the lowest score of rows with ``flagged`` true).
- ``cosine-lite0-224``: the untrained encoder, EfficientNet-Lite0 with ImageNet weights
  (offline), panels squashed to 224 x 224, ImageNet normalisation, cosine of pooled features;
  ``cosine-lite0-224-pad`` pads to a square instead. No threshold of their own.
- ``imagededup-phash``: imagededup's ``PHash().find_duplicates`` with every distance returned
  (``max_distance_threshold=64``); score ``1 - hamming / 64``; imagededup's default
  threshold (distance 10) as the threshold.
- ``imagededup-cnn``: imagededup's ``CNN().find_duplicates`` with its default MobileNetV3,
  whose weights torchvision downloads; offline this row says ``not run`` and why.
- ``imagededup-cnn-lite0``: the same ``CNN().find_duplicates`` with the offline Lite0 encoder
  as imagededup's ``CustomModel``; imagededup's default threshold (cosine 0.9).
- ``run-joint``, ``run-sequential``: the paper's trained pair model of a pipeline run
  (:data:`RUN`, default ``runs/latest``), every pair scored by its pair head exactly as
  :func:`bfutils.retrieval.similarity` scores queries: panels padded to the run's stored
  square size, then resized to the model's input size.
- ``run-encoder``: the same run's frozen ImageNet encoder, untrained, at the same input size
  (cosine of its features): the baseline the trained model must beat.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bfutils import figure_alter as fa
from bfutils import planted_eval
from bfutils.data import read_image_file
from bfutils.data.pixels import to_square

Method = Callable[[Path, Path], tuple[pd.DataFrame, float | None]]
PHASH_BITS = 64
PHASH_DEFAULT_DISTANCE = 10  # imagededup's default max_distance_threshold
CNN_DEFAULT_SIMILARITY = 0.9  # imagededup's default min_similarity_threshold


def panel_files(bench_dir: str | Path) -> list[Path]:
    """Panel files of a benchmark, in ``panels.csv`` order."""
    panels, _ = planted_eval.load_benchmark(bench_dir)
    return [Path(bench_dir) / "panels" / f for f in panels["file"]]


def matrix_pairs(names: list[str], sim: np.ndarray) -> pd.DataFrame:
    """Every unordered pair of a square similarity matrix as a table ``a, b, score``."""
    i, j = np.triu_indices(len(names), k=1)
    names = np.asarray(names)
    return pd.DataFrame({"a": names[i], "b": names[j], "score": sim[i, j].astype(float)})


def _lite0():
    from bfutils.models import build_encoder

    return build_encoder("efficientnet_lite0", pretrained="lite0-offline")


def encoder_cosine(
    bench_dir: Path, work_dir: Path, *, size: int = 224, fit: str = "squash"
) -> tuple[pd.DataFrame, None]:
    """Cosine of untrained EfficientNet-Lite0 features (ImageNet weights, offline).

    Args:
        bench_dir: Benchmark folder.
        work_dir: Unused (the method keeps nothing).
        size: Input side in pixels.
        fit: ``"squash"`` (resize to a square, ignoring aspect) or ``"pad"`` (black borders).

    Returns:
        All pair scores, and no threshold.
    """
    from bfutils.models import encode_images

    files = panel_files(bench_dir)
    shape = (lambda im: fa.resize(im, (size, size))) if fit == "squash" else (
        lambda im: to_square(im, size=size, fit="pad")
    )  # fmt: skip
    images = np.stack([shape(read_image_file(f)) for f in files])
    encoder, _, norm = _lite0()
    feats = encode_images(encoder, norm, images, size=size, batch_size=32, progress=True)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True) + 1e-12
    return matrix_pairs([f.name for f in files], feats @ feats.T), None


def sscd_cosine(bench_dir: Path, work_dir: Path, *, size: int = 128) -> tuple[pd.DataFrame, None]:
    """Cosine of the SSCD copy descriptor alone (:mod:`bfutils.copydesc`), centred on the
    benchmark's own mean as the finder centres it: what the finder's copy shortlist sees."""
    from bfutils import copydesc, detector

    files = panel_files(bench_dir)
    images = [read_image_file(f) for f in files]
    feats = np.concatenate([copydesc.embed(images[i : i + 64], size=size)
                            for i in range(0, len(images), 64)])  # fmt: skip
    feats = detector.centred(feats, feats.mean(axis=0))  # as the finder centres them
    return matrix_pairs([f.name for f in files], feats @ feats.T), None


def _dict_pairs(found: dict, to_score: Callable[[float], float]) -> pd.DataFrame:
    rows = [(a, b, to_score(float(d))) for a, hits in found.items() for b, d in hits]
    return pd.DataFrame(rows, columns=["a", "b", "score"])


def imagededup_phash(bench_dir: Path, work_dir: Path) -> tuple[pd.DataFrame, float]:
    """imagededup PHash through its own ``find_duplicates``, every distance kept."""
    from imagededup.methods import PHash

    found = PHash(verbose=False).find_duplicates(
        image_dir=Path(bench_dir) / "panels",
        max_distance_threshold=PHASH_BITS,
        scores=True,
        num_enc_workers=0,
        num_dist_workers=0,
    )
    scores = _dict_pairs(found, lambda d: 1.0 - d / PHASH_BITS)
    return scores, 1.0 - PHASH_DEFAULT_DISTANCE / PHASH_BITS


def imagededup_cnn(bench_dir: Path, work_dir: Path, *, model: str = "default"):
    """imagededup CNN through its own ``find_duplicates``, every similarity kept.

    Args:
        bench_dir: Benchmark folder.
        work_dir: Unused.
        model: ``"default"`` (imagededup's MobileNetV3; torchvision downloads its weights) or
            ``"lite0"`` (the offline EfficientNet-Lite0 as imagededup's ``CustomModel``).

    Returns:
        All pair scores and imagededup's default threshold.

    Raises:
        RuntimeError: The default model's weights could not be downloaded.
    """
    from imagededup.methods import CNN

    if model == "default":
        try:
            cnn = CNN(verbose=False)
        except Exception as err:  # urllib, torch.hub and SSL errors all mean "no weights"
            raise RuntimeError(
                f"MobileNetV3 weights download failed ({type(err).__name__}: {err})"
            ) from err
    else:
        cnn = CNN(verbose=False, model_config=_lite0_config())
    found = cnn.find_duplicates(
        image_dir=Path(bench_dir) / "panels",
        min_similarity_threshold=-1.0,
        scores=True,
        num_sim_workers=0,
    )
    return _dict_pairs(found, float), CNN_DEFAULT_SIMILARITY


def _lite0_config():
    import torch
    from imagededup.utils.models import CustomModel
    from torchvision import transforms

    encoder, _, (mean, std) = _lite0()
    encoder.eval()
    transform = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )

    class _Features(torch.nn.Module):  # imagededup calls model(batch) -> (N, D)
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, x):
            with torch.no_grad():
                return self.encoder(x)

    return CustomModel(name="efficientnet_lite0_offline", model=_Features(), transform=transform)


RUN = "latest"
"""Pipeline run whose models ``run-*`` score (a folder or a name under ``runs/``)."""


def run_model(bench_dir: Path, work_dir: Path, *, model: str = "joint", method: str = "pair_model"):
    """A pipeline run's saved model over every pair of panels (see the module docstring).

    Raises:
        FileNotFoundError: the run or its model file does not exist (run ``make pipeline``).
    """
    import json

    from bfutils import retrieval, runs, train
    from bfutils.data.pixels import fit_square

    src = runs.resolve(RUN)
    path = src / f"model_{model}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `make pipeline` first")
    if method == "cosine_encoder" and not train.load_model(path)[1].keeps_pretrained_encoder:
        raise ValueError(f"{path.name} trained its encoder: it is not the untrained encoder")
    params = json.loads((src / "params_01_prepare_data.json").read_text())["params"]
    files = panel_files(bench_dir)
    images = np.stack(
        [fit_square(read_image_file(f), size=int(params["image_size"]), fit="pad") for f in files]
    )
    build = {"queries": images, "references": images, "gt": np.full(len(images), -1), "table": None}
    sim = retrieval.similarity(method, build, model_path=path, progress=False)
    return matrix_pairs([f.name for f in files], sim), None


def finder(
    bench_dir: Path, work_dir: Path, detector: str | Path | None = None
) -> tuple[pd.DataFrame, float | None]:
    """The project's finder (:mod:`bfutils.find`), by function if it has one, else by command;
    with the shipped detector, or with ``detector`` (a file from :mod:`bfutils.calibrate`).

    Raises:
        ImportError: ``bfutils.find`` does not exist (yet).
        RuntimeError: The command failed or wrote no ``pairs.csv``.
    """
    if importlib.util.find_spec("bfutils.find") is None:
        raise ImportError("bfutils.find is not importable (the finder has not landed)")
    panels = Path(bench_dir) / "panels"
    fn = getattr(importlib.import_module("bfutils.find"), "find", None)
    if callable(fn):  # a fresh descriptor cache, so the wall time includes embedding
        cache = Path(work_dir) / ("finder_cache" if detector is None else "finder_cache_other")
        df = fn(panels, detector_file=detector, cache=cache, show_progress=True)
        return df, df.attrs.get("threshold")
    out = Path(work_dir) / "finder"
    cmd = [sys.executable, "-m", "bfutils.find", str(panels), "--out", str(out)]
    cmd += ["--detector", str(detector)] if detector is not None else []
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0 or not (out / "pairs.csv").is_file():
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode} without pairs.csv")
    df = pd.read_csv(out / "pairs.csv")
    if "threshold" in df.columns and len(df):
        return df, float(df["threshold"].iloc[0])
    if "flagged" in df.columns and df["flagged"].astype(bool).any():
        return df, float(df.loc[df["flagged"].astype(bool), "score"].min())
    return df, None


METHODS: dict[str, Method] = {
    "finder": finder,
    "cosine-lite0-224": encoder_cosine,
    "cosine-lite0-224-pad": lambda b, w: encoder_cosine(b, w, fit="pad"),
    "cosine-sscd-128": sscd_cosine,
    "imagededup-phash": imagededup_phash,
    "imagededup-cnn": imagededup_cnn,
    "imagededup-cnn-lite0": lambda b, w: imagededup_cnn(b, w, model="lite0"),
    "run-joint": lambda b, w: run_model(b, w, model="joint"),
    "run-sequential": lambda b, w: run_model(b, w, model="sequential"),
    "run-encoder": lambda b, w: run_model(b, w, model="joint", method="cosine_encoder"),
}


def run(
    bench_dir: str | Path,
    out_dir: str | Path,
    methods: list[str] | None = None,
    extra: dict[str, Method] | None = None,
    seen_ids: set[str] | None = None,
) -> pd.DataFrame:
    """Score every method on a benchmark and write the table, markdown and figure.

    A method that raises is kept as a ``not run: <reason>`` row, so the table always shows
    what was tried. Writes ``table.csv``, ``table.md`` and ``planted_benchmark.png`` with its
    ``.csv`` into ``out_dir``.

    Args:
        bench_dir: Folder written by :func:`bfutils.planted.build`.
        out_dir: Folder for the results (created).
        methods: Names from :data:`METHODS` (default: all).
        extra: More methods by name, e.g. an oracle in a test.
        seen_ids: training image ids of the scored run, for the ``training`` groups of
            :func:`bfutils.planted_eval.evaluate`.

    Returns:
        The table (:data:`bfutils.planted_eval.COLUMNS` plus ``wall_s``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = {**METHODS, **(extra or {})}
    names = list(table) if methods is None else list(methods) + list(extra or {})
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {sorted(table)}")
    parts = []
    for name in names:
        print(f"[planted] {name}: running", flush=True)
        start = time.perf_counter()
        try:
            scores, threshold = table[name](Path(bench_dir), out)
            part = planted_eval.evaluate(
                bench_dir, scores, threshold=threshold, method=name, seen_ids=seen_ids
            )
        except Exception as err:  # one failing method must not lose the others
            reason = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            part = planted_eval.not_run(name, reason)
        part["wall_s"] = round(time.perf_counter() - start, 1)
        head = part.iloc[0]
        print(f"[planted] {name}: {head['status']}, top1={head['top1']}, muap={head['muap']}, "
              f"{head['wall_s']} s", flush=True)  # fmt: skip
        parts.append(part)
    result = pd.concat(parts, ignore_index=True)
    result.to_csv(out / "table.csv", index=False)
    (out / "table.md").write_text(planted_eval.markdown(result) + "\n")
    _figure(result, out)
    return result


def _figure(table: pd.DataFrame, out: Path) -> Path | None:
    """Bars of top-1 and muAP per group and method (PNG with its data as CSV)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from bfutils import plots

    data = table[table["status"] == "ok"].copy()
    if data.empty:
        return None
    data["label"] = np.where(
        data["group_kind"] == "all", "ALL", data["group_kind"].str[0] + ":" + data["group"]
    )
    long = data.melt(
        id_vars=["method", "label", "n"], value_vars=["top1", "muap"], var_name="metric"
    )
    fig, axes = plt.subplots(2, 1, figsize=(max(10, 0.55 * data["label"].nunique()), 8))
    for ax, metric in zip(axes, ("top1", "muap"), strict=True):
        sns.barplot(long[long["metric"] == metric], x="label", y="value", hue="method", ax=ax)
        ax.set(ylabel=metric, xlabel="", ylim=(0, 1))
        ax.tick_params(axis="x", rotation=60)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(
        "Planted figure benchmark (f: family, s: query size band, a: area band, c: content)"
    )
    fig.tight_layout()
    return plots.save(fig, "planted_benchmark", data=long, folder=out)


SYNTHETIC_NAME = {
    "run-joint": "joint",
    "run-sequential": "sequential",
    "run-encoder": "imagenet_cnn",
    "imagededup-phash": "phash",
}
"""Planted-benchmark method -> the same method's name in a run's synthetic metrics table."""


def for_run(
    run_dir: str | Path,
    n_panels: int = 1000,
    methods: list[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Build a planted benchmark inside a run folder and score the run's models on it.

    With the defaults (1,000 panels, seed 0) the benchmark is the README's evaluation
    benchmark, panel for panel. Writes ``planted-<n_panels>-s<seed>/`` (panels and
    ``table.*``) in the run, and splits every score by whether the planted pair was cut from
    one of the run's training images (``training``: ``seen`` / ``unseen``).

    Args:
        run_dir: the run whose ``model_*.pt`` the ``run-*`` methods score.
        n_panels: panels in all; a fifth of them are planted reuses (query and source).
        methods: names from :data:`METHODS` (default: the run's models, their encoder and
            imagededup's PHash).
        seed: the benchmark's seed.
    """
    from bfutils import planted

    global RUN
    run_dir = Path(run_dir)
    bench = run_dir / f"planted-{n_panels}-s{seed}"
    if not (bench / "panels").is_dir():
        planted.build(bench, n_panels=n_panels, n_planted=n_panels // 5, seed=seed)
    manifest = run_dir / "data" / "manifest.csv"
    seen = None
    if manifest.is_file():
        m = pd.read_csv(manifest, usecols=["image_id", "split"])
        seen = set(m.loc[m["split"] == "train", "image_id"])
    previous, RUN = RUN, str(run_dir)
    try:
        return run(bench, bench, methods=methods or list(SYNTHETIC_NAME), seen_ids=seen)
    finally:
        RUN = previous


def side_by_side(synthetic: pd.DataFrame, planted_table: pd.DataFrame) -> pd.DataFrame:
    """The synthetic test metrics and the planted benchmark of each model, one row per model.

    Args:
        synthetic: a run's metrics table (``model``, ``roc_auc``; notebook 05).
        planted_table: :func:`run`'s table.

    Returns:
        Rows for every planted method (named as in the synthetic table where it has a row
        there); columns ``synthetic ROC-AUC`` (test pairs) and the planted ``pair ROC-AUC``,
        ``rank 1``, ``recall@10`` and ``muAP``; NaN where a method has no such number.
    """
    syn = synthetic.set_index("model")["roc_auc"]
    unseen = planted_table[(planted_table["group_kind"] == "training")
                           & (planted_table["group"] == "unseen")]  # fmt: skip
    unseen = unseen.set_index("method")["top1"]
    rows = []
    for r in planted_table[planted_table["group_kind"] == "all"].itertuples():
        name = SYNTHETIC_NAME.get(r.method, r.method)
        rows.append({
            "model": name, "planted method": r.method,
            "synthetic test ROC-AUC": syn.get(name, np.nan),
            "planted pair ROC-AUC": getattr(r, "roc_auc", np.nan), "planted rank 1": r.top1,
            "planted rank 1, unseen sources": unseen.get(r.method, np.nan),
            "planted recall@10": r.recall10, "planted muAP": r.muap,
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("model")
