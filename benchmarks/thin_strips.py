"""Thin strips (a 40 x 14 px panel, the size of some real reused panels) in a folder scan.

    python benchmarks/planted_benchmark.py build DIR
    python benchmarks/thin_strips.py DIR --out OUT [--size 40 14] [--n 30] [--dense]
    python benchmarks/thin_strips.py readme OUT [OUT ...]   # the README block, one OUT a size

Two ways a thin strip can be reused, each planted ``--n`` times into a copy of the planted
benchmark's panels (``DIR/panels``), then scanned by ``python -m bfutils.find`` with the shipped
detector (or ``--detector``):

* ``strip of a panel``: a region of 30-60 % of a panel's width and the strip's aspect, shrunk
  to ``--size`` and saved as JPEG 60-90; its source is the whole panel, left in the folder.
* ``strip and strip``: one region of 50-90 % of a panel's width shown twice, once shrunk to
  ``--size`` and once at 1.5-3.5 times that size, shifted by up to a tenth of the region; the
  panel itself is taken out of the folder.

The panels come from the benchmark's distractors of at least 150 px (never its planted pairs),
chosen with ``--seed``; a strip's region is drawn at random among those that show something
(:data:`MIN_CONTENT`). For each strip it prints the rank of its partner among the strip's
scored pairs and whether the pair was flagged, then per kind: partner at rank 1, within the
top 10, and flagged. ``--dense`` adds the same ranks by :func:`bfutils.dense.search` (each strip
slid over every panel with at least twice its pixels, no keypoints) and its time per (strip,
panel). Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

KINDS = ("strip of a panel", "strip and strip")


def dense_ranks(truth: pd.DataFrame, folder: Path, show_progress: bool = True) -> pd.DataFrame:
    """:func:`bfutils.dense.search` of each strip against every panel of ``folder`` with at
    least twice its pixels: per strip its partner's rank (NaN beyond the top 10), correlation and
    margin; ``attrs["ms_per_search"]`` is the time per (strip, panel) pair."""
    from bfutils import dense, progress

    files = sorted(p for p in folder.iterdir() if p.is_file())
    greys = {p.name: dense.grey(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)) for p in files}
    small = {q: greys[q] for q in truth["query"]}
    with progress.bar(total=len(small), desc="dense", unit="strip",
                      disable=not show_progress) as bar:  # fmt: skip
        t0 = time.perf_counter()
        found = dense.search(small, greys, progress=bar.update)
        seconds = time.perf_counter() - t0
    found = found.set_index("query")
    rows = []
    for t in truth.itertuples():
        top = [name for name, _ in found.loc[t.query, "top"]]
        rows.append({"query": t.query, "dense_rank": top.index(t.partner) + 1 if t.partner in top
                     else np.nan, "dense_ncc": found.loc[t.query, "ncc"],
                     "dense_margin": found.loc[t.query, "margin"]})  # fmt: skip
    out = pd.DataFrame(rows)
    out.attrs["ms_per_search"] = 1000 * seconds / max(found.attrs["searched"], 1)
    return out


MIN_CONTENT = 0.5
"""A strip shows something: its grey-level spread is at least this share of its panel's (an
author crops a band or a cell, not empty background; random strips of sparse nuclei or MRI
slices are often black)."""


def _with_content(image: np.ndarray, rw: int, rh: int, rng: np.random.Generator, tries=50):
    """Top-left corner of a ``rw`` x ``rh`` region that passes :data:`MIN_CONTENT` (the region
    with the largest spread of ``tries`` random ones when none does)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    h, w = grey.shape
    need, best = MIN_CONTENT * float(grey.std()), (-1.0, 0, 0)
    for _ in range(tries):
        x0, y0 = int(rng.integers(0, w - rw + 1)), int(rng.integers(0, h - rh + 1))
        spread = float(grey[y0 : y0 + rh, x0 : x0 + rw].std())
        if spread >= need:
            return x0, y0
        best = max(best, (spread, x0, y0))
    return best[1], best[2]


def plant(bench: Path, out: Path, size=(40, 14), n: int = 30, seed: int = 0) -> pd.DataFrame:
    """Copy ``bench/panels`` to ``out/panels`` and plant the strips; returns the truth table
    (``kind``, ``query``, ``partner``, ``panel``, ``image_id``), also written to
    ``out/strips.csv``."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bench / "panels", out / "panels")
    panels = pd.read_csv(bench / "panels.csv")
    big = panels[
        (panels["role"] == "distractor") & (panels[["width", "height"]].min(axis=1) >= 150)
    ]
    if len(big) < 2 * n:
        raise ValueError(f"{bench} has {len(big)} distractors of >= 150 px; {2 * n} are needed")
    rng = np.random.default_rng(seed)
    chosen = big.iloc[rng.permutation(len(big))[: 2 * n]]
    qw, qh = size
    rows = []
    for i, rec in enumerate(chosen.itertuples()):
        kind = KINDS[i % 2]
        image = cv2.imread(str(bench / "panels" / rec.file), cv2.IMREAD_COLOR)
        h, w = image.shape[:2]
        share = rng.uniform(0.3, 0.6) if kind == KINDS[0] else rng.uniform(0.5, 0.9)
        rw = int(w * share)
        rh = min(h, max(4, round(rw * qh / qw)))
        x0, y0 = _with_content(image, rw, rh, rng)
        strip = cv2.resize(
            image[y0 : y0 + rh, x0 : x0 + rw], (qw, qh), interpolation=cv2.INTER_AREA
        )
        query = f"strip{i:03d}.jpg"
        saved = [(query, strip)]
        if kind == KINDS[0]:
            partner = rec.file
        else:
            (out / "panels" / rec.file).unlink()
            dx = int(rng.integers(-(rw // 10), rw // 10 + 1))
            dy = int(rng.integers(-(rh // 10), rh // 10 + 1))
            x1, y1 = int(np.clip(x0 + dx, 0, w - rw)), int(np.clip(y0 + dy, 0, h - rh))
            f = rng.uniform(1.5, 3.5)
            other = cv2.resize(image[y1 : y1 + rh, x1 : x1 + rw], (round(qw * f), round(qh * f)),
                               interpolation=cv2.INTER_AREA)  # fmt: skip
            partner = f"strip{i:03d}-partner.jpg"
            saved.append((partner, other))
        for name, pixels in saved:
            quality = int(rng.integers(60, 91))
            cv2.imwrite(str(out / "panels" / name), pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
        rows.append({"kind": kind, "query": query, "partner": partner, "panel": rec.file,
                     "image_id": rec.image_id})  # fmt: skip
    truth = pd.DataFrame(rows)
    truth.to_csv(out / "strips.csv", index=False)
    return truth


def score(truth: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per strip: the partner's rank among the strip's scored pairs (NaN: never scored), its
    score, inliers and flag."""
    rows = []
    for t in truth.itertuples():
        mine = pairs[(pairs["a"] == t.query) | (pairs["b"] == t.query)]
        other = np.where(mine["a"] == t.query, mine["b"], mine["a"])
        mine = mine.assign(other=other).sort_values("score", ascending=False, kind="stable")
        hit = mine[mine["other"] == t.partner]
        row = {"kind": t.kind, "query": t.query, "partner": t.partner, "image_id": t.image_id,
               "rank": np.nan, "score": np.nan, "inliers": np.nan, "flagged": False}  # fmt: skip
        if len(hit):
            h = hit.iloc[0]
            rank = int((mine["score"] > h["score"]).sum()) + 1  # ties count in the strip's favour
            row |= {"rank": rank, "score": float(h["score"]), "inliers": int(h["inliers"]),
                    "flagged": bool(h["flagged"])}  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def summary(per_strip: pd.DataFrame) -> pd.DataFrame:
    """Partner at rank 1, in the top 10, and flagged, per kind (shares of the strips); with
    :func:`dense_ranks` merged in, the dense search's rank 1 and top 10 too."""
    g = per_strip.groupby("kind", sort=False)
    table = pd.DataFrame({
        "n": g.size(),
        "rank1": g["rank"].apply(lambda r: float((r == 1).mean())),
        "top10": g["rank"].apply(lambda r: float((r <= 10).mean())),
        "flagged": g["flagged"].mean(),
    })  # fmt: skip
    if "dense_rank" in per_strip:
        table["dense_rank1"] = g["dense_rank"].apply(lambda r: float((r == 1).mean()))
        table["dense_top10"] = g["dense_rank"].apply(lambda r: float((r <= 10).mean()))
    return table.round(3)


def readme_table(outs: list[Path]) -> str:
    """The README block from the ``summary.csv`` of runs (one per strip size): partner at rank 1
    / top 10 / flagged by ``find`` and rank 1 / top 10 of the dense search, per kind."""
    from bfutils import report

    rows = []
    for out in outs:
        table = pd.read_csv(out / "summary.csv", index_col="kind")
        h, w = cv2.imread(str(out / "panels" / "strip000.jpg")).shape[:2]
        row = {"strip size": f"{w} x {h}"}
        for kind in KINDS:
            t = table.loc[kind]
            row[f"{kind}: find"] = f"{t['rank1']:.3f} / {t['top10']:.3f} / {t['flagged']:.3f}"
            if "dense_rank1" in table:
                row[f"{kind}: dense"] = f"{t['dense_rank1']:.3f} / {t['dense_top10']:.3f}"
        if "dense_ms_per_search" in table:
            row["dense ms per (strip, panel)"] = f"{table['dense_ms_per_search'].iloc[0]:.1f}"
        rows.append(row)
    return report.markdown(pd.DataFrame(rows))


def main(argv: list[str] | None = None) -> int:
    """Plant, scan and print the table (or, with ``readme OUT [OUT ...]``, write the README
    block ``thin-strips`` from earlier runs)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["readme"]:
        from bfutils import report

        if len(argv) < 2:
            raise SystemExit("usage: thin_strips.py readme OUT [OUT ...]")
        body = readme_table([Path(a) for a in argv[1:]])
        print(f"updated {report.replace_block('thin-strips', body)}")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="a folder written by planted_benchmark.py build")
    ap.add_argument("--out", type=Path, required=True, help="work folder (replaced)")
    ap.add_argument("--size", type=int, nargs=2, default=(40, 14), metavar=("W", "H"))
    ap.add_argument("--n", type=int, default=30, help="strips of each kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detector", default=None, help="detector file (default: the shipped one)")
    ap.add_argument(
        "--dense",
        action="store_true",
        help="also search each strip densely in every larger panel (bfutils.dense)",
    )
    args = ap.parse_args(argv)
    truth = plant(args.bench, args.out, tuple(args.size), n=args.n, seed=args.seed)
    cmd = [sys.executable, "-m", "bfutils.find", str(args.out / "panels"), "--out",
           str(args.out / "find")]  # fmt: skip
    if args.detector:
        cmd += ["--detector", args.detector]
    subprocess.run(cmd, check=True)
    per_strip = score(truth, pd.read_csv(args.out / "find" / "pairs.csv"))
    ms = None
    if args.dense:
        found = dense_ranks(truth, args.out / "panels")
        per_strip = per_strip.merge(found, on="query", validate="one_to_one")
        ms = found.attrs["ms_per_search"]
        print(f"dense search: {ms:.2f} ms per (strip, panel)")
    per_strip.to_csv(args.out / "per_strip.csv", index=False)
    print(per_strip.to_string(index=False))
    table = summary(per_strip)
    if ms is not None:
        table["dense_ms_per_search"] = round(ms, 2)
    table.to_csv(args.out / "summary.csv")
    print(table.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
