"""The planted figure benchmark: build the panel folder, then score every method on it.

Usage::

    python benchmarks/planted_benchmark.py build /tmp/planted          # ~1,000 panels, ~30 s
    python benchmarks/planted_benchmark.py run /tmp/planted --out /tmp/planted_results
    python benchmarks/planted_benchmark.py readme /tmp/planted_results   # the README's table
    python benchmarks/planted_benchmark.py content OUT [OUT ...]   # rank 1 / muAP per content

``build`` reads ``../shared/data`` (DSB 2018, BCCD) and the embedded images and never writes
into the repository; without ``../shared/data`` it uses the embedded images only and says so.
``run`` writes ``table.csv``, ``table.md`` and ``planted_benchmark.png`` (with its CSV) and
prints progress and wall times. See :mod:`bfutils.planted`, :mod:`bfutils.planted_eval` and
:mod:`bfutils.planted_methods` for what is measured.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

from bfutils import planted, planted_methods


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run ``build``, ``run`` or ``readme``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a planted benchmark folder")
    b.add_argument("out", type=Path, help="folder to create (outside the repository)")
    b.add_argument("--n-panels", type=int, default=1000)
    b.add_argument("--n-planted", type=int, default=200)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--sources", nargs="+", default=list(planted.SOURCES), choices=planted.ALL_SOURCES
    )
    m = sub.add_parser("readme", help="write a run's summary table into the README block")
    m.add_argument("out", type=Path, help="folder written by run (its table.csv)")
    c = sub.add_parser("content", help="write rank 1 / muAP per content into the README block")
    c.add_argument("outs", type=Path, nargs="+", help="folders written by run (one draw)")
    r = sub.add_parser("run", help="score methods on a benchmark folder")
    r.add_argument("bench", type=Path, help="folder written by build")
    r.add_argument("--out", type=Path, required=True, help="folder for table.csv and figures")
    r.add_argument("--methods", nargs="+", default=None, choices=list(planted_methods.METHODS))
    r.add_argument(
        "--run",
        default="latest",
        help="pipeline run whose models the run-* methods score (default runs/latest)",
    )
    r.add_argument(
        "--detector",
        type=Path,
        default=None,
        help="also score the finder with this detector file (a row named finder-<file stem>), "
        "e.g. one built by python -m bfutils.calibrate --template",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.command == "build":
        summary = planted.build(
            args.out,
            n_panels=args.n_panels,
            n_planted=args.n_planted,
            seed=args.seed,
            sources=args.sources,
        )
        print(json.dumps(summary, indent=2))
        for note in summary["notes"]:
            print(f"NOTE: {note}")
    elif args.command == "content":
        import pandas as pd

        from bfutils import planted_eval, report

        table = pd.concat([pd.read_csv(out / "table.csv") for out in args.outs])
        body = planted_eval.by_content(table)
        print(body)
        print(f"updated {report.replace_block('planted-content', body)}")
    elif args.command == "readme":
        import pandas as pd

        from bfutils import planted_eval, report

        table = pd.read_csv(args.out / "table.csv")
        body = planted_eval.summary(table)
        print(body)
        print(f"updated {report.replace_block('planted', body)}")
    else:
        planted_methods.RUN = args.run
        extra = None
        if args.detector is not None:
            other = functools.partial(planted_methods.finder, detector=args.detector)
            extra = {f"finder-{args.detector.stem}": other}
        table = planted_methods.run(args.bench, args.out, methods=args.methods, extra=extra)
        print((args.out / "table.md").read_text().split("\n## ")[0])
        print(f"{len(table)} rows -> {args.out / 'table.csv'}")
    print(f"wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
