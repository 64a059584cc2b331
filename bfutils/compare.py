"""Was one image derived from the other? A detector's verdict on your own files, with evidence.

    python -m bfutils.compare figure1_panelC.png figure4_panelA.tif      # one pair
    python -m bfutils.compare --folder panels/ --out screening/          # screen a folder

The detector is a detector file (:mod:`bfutils.detector`): by default the shipped one (SSCD
copy descriptor, perceptual hashes and grey thumbnails in 8 orientations, SIFT and XFeat
keypoint verification, calibrated on
planted figure panels, :mod:`bfutils.calibrate`); ``--detector FILE`` or ``--run DIR`` (its
``detector.pt``) chooses another. The score fuses descriptor similarities (and, for a
detector with encoder views, the encoder cosine of the whole image and its best sub-region)
with keypoint evidence (one-to-one SIFT matches, a plausible RANSAC fit, mirror tried,
inliers weighed against chance; XFeat inliers, :mod:`bfutils.localfeat`); it
is the same whichever file is named first. "derived"
means the score reaches the detector's validation threshold: evidence to look at, not a
verdict.

``--folder`` is :func:`bfutils.find.find` (shortlist, verify, report), not a second path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bfutils import data, descriptors, detector, find, panels, verify


def load_detector(run_dir: str | Path | None = None, path: str | Path | None = None):
    """A detector from a file, a run folder (``<run>/detector.pt``), or the shipped default.

    Raises:
        FileNotFoundError: the run has no ``detector.pt``.
    """
    if path is not None:
        return detector.load(path)
    if run_dir is not None:
        file = Path(run_dir) / "detector.pt"
        if not file.exists():
            raise FileNotFoundError(
                f"{file} is missing: export the run's detector first, or pass --detector FILE"
            )
        return detector.load(file)
    return detector.default()


def compare_files(path_a, path_b, det: detector.Detector | None = None) -> dict:
    """Score one pair of files; returns the score and its evidence as a dict.

    Args:
        path_a: first image file.
        path_b: second image file.
        det: the detector (default: the shipped one).

    Raises:
        bfutils.data.ImageReadError: a file cannot be read (the message names it).
    """
    det = detector.resolve(det)
    images = [data.read_image_file(p) for p in (path_a, path_b)]
    recs = dict(zip("ab", descriptors.compute(images, det), strict=True))
    shas = {key: panels.content_hash(p) for key, p in zip("ab", (path_a, path_b), strict=True)}
    # the finder's own path: a pair alone is set against the detector's typical rival
    table = find.verify_pairs([("a", "b")], recs, shas, det, show_progress=False)
    score = float(find.fused_scores(table, det)[0])
    row = table.iloc[0]
    names = ["pair_score", "blank", *verify.NO_MATCH, *detector.FEATURES]
    return {"image_a": str(path_a), "image_b": str(path_b), "score": score,
            "derived": score >= det.threshold, "threshold": det.threshold,
            **{n: row[n] for n in names}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("images", nargs="*", help="two image files: a and b")
    ap.add_argument("--folder", help="screen every panel in this folder (bfutils.find)")
    ap.add_argument("--detector", default=None, help="detector file (default: the shipped one)")
    ap.add_argument("--run", default=None, help="use the detector.pt of this run folder")
    ap.add_argument("--out", default=None, help="--folder: output folder for the report")
    args = ap.parse_args(argv)
    if bool(args.folder) == (len(args.images) == 2):
        ap.error("give two image files, or --folder DIR")
    try:
        det = load_detector(args.run, args.detector)
        if args.folder:
            table = find.find(args.folder, detector_file=det, out=args.out)
            print(table[["a", "b", "score", "flagged", "inliers", "transform"]].head(20)
                  .to_string(index=False))  # fmt: skip
            return 0
        r = compare_files(args.images[0], args.images[1], det)
    except (data.ImageReadError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    verdict = "DERIVED" if r["derived"] else "not derived"
    fit = r["transform"] or "no keypoint fit"
    blank = " (a blank panel: no content, no evidence)" if r["blank"] else ""
    print(
        f"{verdict}: fused score {r['score']:.3f} (threshold {r['threshold']:.3f}){blank}; "
        f"pair score {r['pair_score']:.3f}; {int(r['inliers'])} keypoint inliers of "
        f"{int(r['matches'])} one-to-one matches (evidence {r['evidence']:.1f}); {fit}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
