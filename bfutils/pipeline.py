"""One entry point that runs the numbered notebooks in order with papermill.

    python -m bfutils.pipeline --profile smoke            # the whole pipeline, CPU default
    python -m bfutils.pipeline --profile smoke --only 01 02
    python -m bfutils.pipeline --profile cells --run-name cells-try

A profile (``params/<name>.yaml``) holds ``common`` parameters (passed to every notebook that
declares them) and per-notebook parameters; a notebook may be listed with several parameter
sets (``03_train_barlow_twins`` runs once per schedule). Parameter names a notebook does not
declare are refused before anything runs: papermill itself only warns about them.
Executed notebooks are run records and go to ``runs/<run-name>/``, never over the sources.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

from bfutils import paths


def load_profile(name: str) -> dict:
    """Read ``params/<name>.yaml`` (or a path to a YAML file)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else paths.PARAMS / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in paths.PARAMS.glob("*.yaml"))
        raise SystemExit(f"profile {name!r}: {path} does not exist; known profiles: {known}")
    profile = yaml.safe_load(path.read_text()) or {}
    unknown = set(profile) - {"common", "notebooks", "description"}
    if unknown:
        raise SystemExit(f"{path}: unknown top-level keys {sorted(unknown)}")
    return profile


def notebook_list(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in sorted (= run) order, optionally filtered by prefix."""
    nbs = sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        nbs = [nb for nb in nbs if any(nb.name.startswith(p) for p in only)]
    return nbs


def declared_parameters(notebook: Path) -> dict:
    """Parameters declared in the notebook's ``parameters`` cell (papermill's own parser)."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def plan_runs(profile: dict, notebooks: list[Path]) -> list[tuple[Path, dict, str]]:
    """Resolve (notebook, parameters, label) for every execution; refuse unknown names.

    Raises:
        SystemExit: naming the notebook and the parameter it does not declare.
    """
    common = profile.get("common") or {}
    per_nb = profile.get("notebooks") or {}
    stems = {nb.stem for nb in notebooks}
    all_stems = {nb.stem for nb in notebook_list()}
    stray = set(per_nb) - all_stems
    if stray:
        raise SystemExit(f"profile names notebooks that do not exist: {sorted(stray)}")
    runs, used_common = [], set()
    for nb in notebooks:
        declared = declared_parameters(nb)
        sets = per_nb.get(nb.stem) or [{}]
        sets = sets if isinstance(sets, list) else [sets]
        for k, own in enumerate(sets):
            bad = sorted(set(own) - set(declared))
            if bad:
                raise SystemExit(
                    f"{nb.name} does not declare parameter(s) {bad}; it declares {sorted(declared)}"
                )
            params = {key: v for key, v in common.items() if key in declared}
            used_common |= set(params)
            params.update(own)
            label = nb.stem + (f"_{k}" if len(sets) > 1 else "")
            label += "".join(f"_{v}" for key, v in own.items() if key == "schedule")
            runs.append((nb, params, label))
    unused = set(common) - used_common
    if unused and stems == all_stems:
        raise SystemExit(f"common parameter(s) {sorted(unused)} are declared by no notebook")
    return runs


def run(profile_name: str, run_name: str | None = None, only: list[str] | None = None) -> Path:
    """Execute the planned notebooks into a run folder; returns the folder."""
    import papermill

    profile = load_profile(profile_name)
    runs = plan_runs(profile, notebook_list(only))
    if not runs:
        raise SystemExit(f"no notebooks match {only}")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = paths.RUNS / (run_name or f"{Path(profile_name).stem}-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    # the kernels inherit this environment: notebooks write their outputs into the run folder
    os.environ["BFUTILS_RUN_DIR"] = str(out)
    timings = []
    for nb, params, label in runs:
        t0 = time.perf_counter()
        print(f"[pipeline] {label} {params}", flush=True)
        papermill.execute_notebook(
            input_path=str(nb),
            output_path=str(out / f"{label}.ipynb"),
            parameters=params,
            cwd=str(paths.NOTEBOOKS),
            kernel_name="python3",
            progress_bar=False,
        )
        timings.append((label, time.perf_counter() - t0))
        print(f"[pipeline] {label} done in {timings[-1][1]:.0f} s", flush=True)
    lines = [f"{label}\t{sec:.1f}" for label, sec in timings]
    (out / "timings.tsv").write_text("notebook\tseconds\n" + "\n".join(lines) + "\n")
    latest = paths.RUNS / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(out.name)
    print(f"[pipeline] run folder: {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default="smoke", help="params/<profile>.yaml (default smoke)")
    ap.add_argument("--run-name", default=None, help="run folder name under runs/")
    ap.add_argument("--only", nargs="*", default=None, help="notebook prefixes, e.g. 01 02")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    args = ap.parse_args(argv)
    if args.dry_run:
        for nb, params, label in plan_runs(load_profile(args.profile), notebook_list(args.only)):
            print(label, nb.name, params)
        return 0
    run(args.profile, run_name=args.run_name, only=args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
