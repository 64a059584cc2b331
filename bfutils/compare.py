"""Was image b derived from image a? The trained detector of a run, on your own files.

    python -m bfutils.compare figure1_panelC.png figure4_panelA.tif      # one pair
    python -m bfutils.compare --folder panels/ --out suspicious.csv      # screen a folder

The detector is the ``fused`` model of a pipeline run (default ``runs/latest``): the pair
model's score (``fuse_with``, usually ``joint``) and keypoint evidence (SIFT inliers after a
RANSAC fit, mirrored image tried too), combined by the logistic regression fitted on that
run's validation pairs. "derived" means the fused score reaches the threshold chosen on the
run's validation pairs. A score is evidence to look at, not a verdict: the inlier count and the
mirror flag say what the keypoint matcher saw.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bfutils import baselines, classic, data, metrics, models, paths, results, train


@dataclass
class Detector:
    """Everything needed to score new pairs like the run scored its test pairs."""

    model: torch.nn.Module
    cfg: train.TrainConfig
    pipeline: object
    fuse_with: str
    threshold: float
    image_size: int
    run_dir: Path
    device: str = "cpu"


def load_detector(run_dir: str | Path | None = None, device: str = "cpu") -> Detector:
    """Load the fused detector of a pipeline run (notebooks 03 and 04 must have run)."""
    run_dir = Path(run_dir) if run_dir else paths.RUNS / "latest"
    fused_path = run_dir / "fused_model.joblib"
    if not fused_path.exists():
        raise FileNotFoundError(f"{fused_path} is missing: run the pipeline (notebook 04) first")
    pipeline, fuse_with = baselines.load_fused(fused_path)
    model, cfg = train.load_model(run_dir / f"model_{fuse_with}.pt", device=device)
    preds = results.read_predictions(run_dir).get("fused")
    if preds is None:
        raise FileNotFoundError(f"{run_dir}/predictions_fused.csv is missing: run notebook 04")
    val = preds[preds["split"] == "val"]
    threshold = metrics.choose_threshold(val["label"], val["score"])
    params = run_dir / "params_01_prepare_data.json"
    size = json.loads(params.read_text())["params"]["image_size"] if params.exists() else 160
    return Detector(model, cfg, pipeline, fuse_with, float(threshold), int(size), run_dir, device)


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Read a file (PNG, JPEG, TIFF, ...) as the square RGB image the pipeline would store."""
    # a writable copy: torch.from_numpy warns on the read-only arrays PIL hands out
    return np.array(data.fit_square(data.read_image_file(path), size=size), copy=True)


def _features(det: Detector, images: np.ndarray) -> torch.Tensor:
    f = models.encode_images(
        det.model.encoder, train.model_norm(det.model), images, size=det.cfg.input_size,
        device=det.device, progress=False,
    )  # fmt: skip
    return torch.from_numpy(f).to(det.device)


def score_pairs(det: Detector, a: np.ndarray, b: np.ndarray, n_jobs: int = 1) -> pd.DataFrame:
    """Fused score and its evidence for row-aligned image stacks ``a`` and ``b``."""
    pair = det.model.score_from_features(_features(det, a), _features(det, b)).cpu().numpy()
    details = classic.keypoint_details(a, b, n_jobs=n_jobs, progress=False)
    score = baselines.fused_scores(det.pipeline, pair, details)
    out = details[["inliers", "matches", "mirror_won"]].assign(pair_score=pair, score=score)
    return out.assign(derived=out["score"] >= det.threshold, threshold=det.threshold)


def compare_files(path_a, path_b, det: Detector) -> dict:
    """Score one pair of files; returns the evidence as a dict."""
    a = load_image(path_a, det.image_size)[None]
    b = load_image(path_b, det.image_size)[None]
    row = score_pairs(det, a, b).iloc[0].to_dict()
    return {"image_a": str(path_a), "image_b": str(path_b), **row}


def screen_folder(folder, det: Detector, verify: int = 200, n_jobs: int = 1) -> pd.DataFrame:
    """Every pair of images in a folder, most suspicious first.

    The pair model scores all pairs at once; the ``verify`` highest are matched with keypoints
    and re-scored by the fused model (keypoint matching every pair would be quadratic and slow).
    """
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in data.IMAGE_EXTENSIONS)
    if len(files) < 2:
        raise ValueError(f"{folder}: needs at least two image files, found {len(files)}")
    images = np.stack([load_image(f, det.image_size) for f in files])
    z = det.model.projector(_features(det, images))
    i, j = np.array(list(itertools.combinations(range(len(files)), 2))).T
    with torch.no_grad():
        det.model.eval()
        pair = torch.sigmoid(det.model.head(z[i], z[j])).cpu().numpy()
    top = np.argsort(-pair, kind="stable")[:verify]
    table = score_pairs(det, images[i[top]], images[j[top]], n_jobs=n_jobs)
    table.insert(0, "image_b", [str(files[k]) for k in j[top]])
    table.insert(0, "image_a", [str(files[k]) for k in i[top]])
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("images", nargs="*", help="two image files: a and b")
    ap.add_argument("--folder", help="screen every pair of images in this folder instead")
    ap.add_argument("--run", default=None, help="run folder with the detector (runs/latest)")
    ap.add_argument("--verify", type=int, default=200, help="pairs to keypoint-verify (--folder)")
    ap.add_argument("--out", default=None, help="write the folder screening table to this CSV")
    args = ap.parse_args(argv)
    if bool(args.folder) == (len(args.images) == 2):
        ap.error("give two image files, or --folder DIR")
    try:
        return _run(args)
    except (data.ImageReadError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args) -> int:
    det = load_detector(args.run)
    if args.folder:
        table = screen_folder(args.folder, det, verify=args.verify)
        if args.out:
            table.to_csv(args.out, index=False)
        print(table.head(20).to_string(index=False))
        return 0
    r = compare_files(args.images[0], args.images[1], det)
    verdict = "DERIVED" if r["derived"] else "not derived"
    print(f"{verdict}: fused score {r['score']:.3f} (threshold {r['threshold']:.3f}); "
          f"pair model {r['pair_score']:.3f}; {int(r['inliers'])} keypoint inliers of "
          f"{int(r['matches'])} matches{' (mirrored)' if r['mirror_won'] else ''}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
