"""Run folders: list them, compare two side by side, publish one into ``figures/`` and the README.

    python -m bfutils.runs list
    python -m bfutils.runs compare runs/smoke-20261129-220000 runs/cells-20261129-230000
    python -m bfutils.runs publish runs/latest          # what `make results RUN=...` calls

A run owns everything it makes (``runs/<name>/``: data, pairs, figures, tables, models,
predictions). Nothing under version control changes while a run executes; only ``publish``,
asked for by name, copies one run's figures into ``figures/`` and writes its tables into the
README's results block.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

from bfutils import paths

METRICS = ("roc_auc", "roc_auc_hard", "average_precision", "f1")
"""Columns of ``metrics_table.csv`` shown by :func:`compare`."""


def resolve(run: str | Path) -> Path:
    """A run folder from a path or a name under ``runs/`` (``latest`` follows the link).

    Raises:
        FileNotFoundError: naming the folder and the runs that exist.
    """
    path = Path(run)
    if not path.is_dir():
        path = paths.RUNS / str(run)
    if not path.is_dir():
        known = [p.name for p in list_runs()]
        raise FileNotFoundError(f"run {str(run)!r} not found ({path}); runs: {known}")
    return path.resolve()


def list_runs() -> list[Path]:
    """Run folders under ``runs/``, oldest first (``latest`` and ``nbval`` excluded)."""
    if not paths.RUNS.is_dir():
        return []
    found = [p for p in paths.RUNS.iterdir() if p.is_dir() and not p.is_symlink()]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def metrics_table(run: str | Path) -> pd.DataFrame:
    """The run's ``figures/metrics_table.csv`` (written by notebook 05).

    Raises:
        FileNotFoundError: when notebook 05 has not run in that folder.
    """
    path = resolve(run) / "figures" / "metrics_table.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run notebook 05 for this run first")
    return pd.read_csv(path)


def compare(run_a: str | Path, run_b: str | Path, columns=METRICS) -> pd.DataFrame:
    """Two runs' test metrics side by side, one row per model, with the difference b - a.

    Args:
        run_a: a run folder or name (e.g. ``runs/smoke-...`` or ``latest``).
        run_b: the other run.
        columns: metrics to show (columns of ``metrics_table.csv``).

    Returns:
        A frame indexed by model with ``<metric>_a``, ``<metric>_b`` and ``<metric>_diff``;
        a model present in one run only has NaN in the other's columns.
    """
    a, b = metrics_table(run_a), metrics_table(run_b)
    keep = ["model", *columns]
    both = a[keep].merge(b[keep], on="model", how="outer", suffixes=("_a", "_b"), sort=False)
    for col in columns:
        both[f"{col}_diff"] = both[f"{col}_b"] - both[f"{col}_a"]
    order = [f"{c}_{s}" for c in columns for s in ("a", "b", "diff")]
    return both.set_index("model")[order]


def publish(
    run: str | Path, readme: Path | None = None, figures: Path | None = None,
    block: str = "results",
) -> Path:  # fmt: skip
    """Copy a run's figures into ``figures/`` and write its tables into the README block.

    Args:
        run: the run folder or name.
        readme: README to update (default the project's).
        figures: destination folder (default :data:`bfutils.paths.PUBLISHED_FIGURES`).
        block: README block to write (``<!-- block:start -->``). Another block than the
            default ``results`` (e.g. ``paper`` for a second profile) gets the tables only;
            the published figures stay those of the ``results`` run.

    Returns:
        The resolved run folder.
    """
    from bfutils import report

    src = resolve(run)
    table = metrics_table(src)
    if block == "results":
        dest = Path(figures or paths.PUBLISHED_FIGURES)
        dest.mkdir(parents=True, exist_ok=True)
        for f in sorted((src / "figures").iterdir()):
            if f.is_file():
                shutil.copy2(f, dest / f.name)
    extra = ""
    retrieval = src / "figures" / "retrieval_table.csv"
    if retrieval.exists():
        extra = "Copy-detection retrieval on the test split (`figures/retrieval_table.csv`):\n\n"
        extra += report.markdown(pd.read_csv(retrieval).round(3))
    side = src / "figures" / "synthetic_vs_planted.csv"
    if side.exists():
        extra += (
            "\n\nSynthetic test pairs and the planted figure benchmark side by side (notebook "
            "05, `figures/synthetic_vs_planted.csv`; the run's models scored on every pair of "
            "the benchmark's panels; `imagenet_cnn` is their untrained encoder at the same "
            "input size):\n\n"
        )
        frame = pd.read_csv(side).round(3)
        extra += report.markdown(frame.astype(object).where(frame.notna(), "-"))
    ablation = src / "figures" / "ablation.csv"
    if ablation.exists():
        from bfutils import ablation as abl

        result = pd.read_csv(ablation)
        extra += (
            "\n\nAblation of the joint model on validation (notebook 07, "
            "`figures/ablation.csv`; 95% bootstrap intervals; the untrained encoder's cosine "
            "is the reference):\n\n"
        )
        extra += report.markdown(abl.table(result).reset_index())
        extra += "\n\n" + "\n".join(f"- {line}" for line in abl.verdict(result).splitlines())
    report.update_readme(
        src, report.metrics.to_markdown(table), extra_md=extra, readme=readme, block=block
    )
    return src


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="run folders, oldest first")
    cmp_ = sub.add_parser("compare", help="two runs' test metrics side by side")
    cmp_.add_argument("run_a")
    cmp_.add_argument("run_b")
    cmp_.add_argument("--out", default=None, help="also write the comparison as CSV")
    pub = sub.add_parser("publish", help="copy a run's figures to figures/ and update the README")
    pub.add_argument("run", nargs="?", default="latest")
    pub.add_argument(
        "--block", default="results", help="README block; not 'results': tables only, no figures"
    )
    args = ap.parse_args(argv)
    try:
        if args.cmd == "list":
            for p in list_runs():
                done = (p / "figures" / "metrics_table.csv").exists()
                print(f"{p.name}\t{'complete' if done else 'partial'}")
        elif args.cmd == "compare":
            table = compare(args.run_a, args.run_b)
            if args.out:
                table.to_csv(args.out)
            with pd.option_context("display.width", 200, "display.max_columns", 50):
                print(table.round(3).to_string())
        else:
            src = publish(args.run, block=args.block)
            where = f"{paths.PUBLISHED_FIGURES} and " if args.block == "results" else ""
            print(f"published {src} into {where}README.md (block {args.block})")
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
