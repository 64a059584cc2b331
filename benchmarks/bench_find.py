"""Scale benchmark of the finder: scan 1,000 and 10,000 panels (within-set mode).

    .venv/bin/python benchmarks/bench_find.py                  # 1k and 10k
    .venv/bin/python benchmarks/bench_find.py --sizes 1000     # 1k only

Panels are random crops (40-128 px, from distinct cells: no two overlap) of DSB 2018 and BCCD
images from ``../shared/data`` (the
embedded images when it is missing), 5 % of them with a planted altered copy, written into a
temporary folder (never into the repo). Each size runs in a fresh process with an empty
descriptor cache, so the wall time covers read, embed, index, verify and score, and the peak
RSS is that process's. Prints wall time, the 10k/1k ratio, peak RSS, and the share of planted
copies whose partner ranks first. A benchmark: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bfutils import augment, data, paths


def _sources(limit: int = 400) -> list[np.ndarray]:
    files = sorted((paths.shared("dsb2018")).glob("*.png"))[: limit // 2]
    files += sorted((paths.shared("bccd")).glob("*.jpg"))[: limit // 2]
    if files:
        return [data.read_image_file(f) for f in files]
    rec = data.load_records("embedded")
    return list(data.load_images(rec.iloc[:limit], size=256, progress=False))


CELL = 128
"""Distractors are cut from distinct 128 px cells of the sources, so no two of them overlap
(overlapping crops of one image would be genuine partial reuse, not false alarms)."""


def make_panels(folder: Path, n: int, seed: int = 0, copy_share: float = 0.05) -> list[tuple]:
    """Write ``n`` panels; returns the planted (original, copy) file-name pairs."""
    rng = np.random.default_rng(seed)
    sources = _sources(limit=2000)
    cells = [(s, y, x) for s, im in enumerate(sources)
             for y in range(0, im.shape[0] - CELL + 1, CELL)
             for x in range(0, im.shape[1] - CELL + 1, CELL)]  # fmt: skip
    order = rng.permutation(len(cells))
    n_copies = int(n * copy_share)
    if n - n_copies > len(cells):
        raise ValueError(f"{n} panels need more than the {len(cells)} distinct cells available")
    planted = []
    for i, c in enumerate(order[: n - n_copies]):
        s, y0, x0 = cells[c]
        side = int(rng.integers(40, CELL + 1))
        y, x = (
            y0 + int(rng.integers(0, CELL - side + 1)),
            x0 + int(rng.integers(0, CELL - side + 1)),
        )
        crop = np.ascontiguousarray(sources[s][y : y + side, x : x + side])
        Image.fromarray(crop).save(folder / f"p{i:05d}.png")
        if len(planted) < n_copies:
            family = augment.FAMILIES[len(planted) % len(augment.FAMILIES)]
            copy = augment.apply(crop, augment.sample(family, rng))
            f = rng.uniform(0.6, 1.4)
            copy = cv2.resize(copy, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            name = f"c{len(planted):05d}.jpg"
            Image.fromarray(copy).save(folder / name, quality=int(rng.integers(60, 91)))
            planted.append((f"p{i:05d}.png", name))
    return planted


def _cosine_rank1(folder: Path, cache: Path, planted: list[tuple]) -> float:
    """Share of planted copies whose nearest panel by plain copy-descriptor (SSCD) cosine is
    the original (read from the scan's own descriptor cache: no second embedding)."""
    from bfutils import descriptors, detector, panels

    det = detector.default()
    items, _ = panels.scan(folder)
    recs, _ = descriptors.describe(
        items, det, cache / "descriptors" / det.cache_key(), show_progress=False
    )
    keys = [p.key for p in items if p.sha in recs]
    g = np.stack([recs[p.sha]["copy"] for p in items if p.sha in recs]).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    pos = {k: i for i, k in enumerate(keys)}
    hits = []
    for original, copy in planted:
        sims = g @ g[pos[copy]]
        sims[pos[copy]] = -2
        hits.append(keys[int(np.argmax(sims))] == original)
    return round(float(np.mean(hits)), 3) if hits else float("nan")


def worker(n: int, seed: int) -> dict:
    """Generate ``n`` panels, scan them once, measure."""
    from bfutils import find

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "panels"
        folder.mkdir()
        planted = make_panels(folder, n, seed=seed)
        t0 = time.perf_counter()
        table = find.find(folder, cache=Path(tmp) / "cache")
        wall = time.perf_counter() - t0
        cosine_rank1 = _cosine_rank1(folder, Path(tmp) / "cache", planted)
    best = {}
    for row in table.itertuples(index=False):  # highest score first
        best.setdefault(row.a, row.b)
        best.setdefault(row.b, row.a)
    rank1 = np.mean([best.get(c) == o for o, c in planted]) if planted else float("nan")
    flagged = table[table["flagged"]]
    planted_set = {frozenset(p) for p in planted}
    false = sum(frozenset((r.a, r.b)) not in planted_set for r in flagged.itertuples())
    rss = [resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN)]  # fmt: skip
    return {
        "n": n,
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(max(rss) / 2**20, 2),
        "pairs_verified": len(table),
        "planted": len(planted),
        "copy_rank1": round(float(rank1), 3),
        "sscd_cosine_rank1": cosine_rank1,
        "false_flags_per_1000": round(1000 * false / n, 1),
    }


def main(argv=None) -> int:
    """Run each size in its own process and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.seed)))
        return 0
    results = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--worker", str(n), "--seed", str(args.seed)]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    if len(results) > 1:
        print(f"time ratio {results[-1]['n']}/{results[0]['n']}: "
              f"{results[-1]['wall_s'] / results[0]['wall_s']:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
