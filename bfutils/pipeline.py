"""One entry point that runs the numbered notebooks in order with papermill.

    python -m bfutils.pipeline --profile smoke            # the whole pipeline, CPU default
    python -m bfutils.pipeline --profile smoke --only 01 02
    python -m bfutils.pipeline --profile cells --run-name cells-try
    python -m bfutils.pipeline --profile smoke --publish   # then copy figures + README block

A profile (``params/<name>.yaml``) holds ``common`` parameters (passed to every notebook that
declares them) and per-notebook parameters; a notebook may be listed with several parameter
sets (``03_train_barlow_twins`` runs once per schedule). Parameter names a notebook does not
declare are refused before anything runs: papermill itself only warns about them.
Executed notebooks are run records and go to ``runs/<run-name>/``, never over the sources.
Everything else a run makes (data, pairs, models, predictions, figures, tables) goes there too;
tracked files (``figures/``, the README's results block) change only with ``--publish``.

Progress: one line per cell (notebook, cell number, the section it belongs to) and the
notebooks' own progress bars (training, feature caching, keypoint matching) on the console.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

from bfutils import paths, registry


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
            if "schedule" in own:  # a notebook run once per schedule is labelled by it
                try:
                    registry.check_schedule(own["schedule"], allowed=registry.PAIR_MODELS)
                except ValueError as err:
                    raise SystemExit(f"{nb.name}: {err}") from err
                label += f"_{own['schedule']}"
            runs.append((nb, params, label))
    unused = set(common) - used_common
    if unused and stems == all_stems:
        raise SystemExit(f"common parameter(s) {sorted(unused)} are declared by no notebook")
    return runs


class _CellLines(logging.Filter):
    """Turns papermill's ``Executing Cell N`` log records into one readable line per code cell.

    Everything else papermill logs (markdown cells, and the notebooks' printed output repeated
    as log records) is dropped here: it is in the executed notebook, and the console is for
    progress.
    """

    def __init__(self, label: str, steps: list[str | None]):
        super().__init__()
        self.label, self.steps = label, steps

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if not msg.startswith("Executing Cell"):
            return False
        n = int(msg.split()[2].strip("-"))
        step = self.steps[n - 1] if n <= len(self.steps) else None
        if step is None:
            return False
        record.msg, record.args = f"[pipeline] {self.label}: {step}", ()
        return True


def cell_steps(notebook: Path, injected: bool = False) -> list[str | None]:
    """Per cell as papermill executes it: ``code cell k/K · <section heading>``, None for markdown.

    Args:
        notebook: the source notebook.
        injected: papermill adds an ``injected-parameters`` cell after the parameters cell
            when parameters are passed; count it.
    """
    import nbformat

    kinds, current = [], ""
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "markdown":
            first = (cell.source.strip().splitlines() or [""])[0]
            current = first.lstrip("#").strip() if first.startswith("#") else current
            kinds.append(None)
            continue
        kinds.append(current)
        if injected and "parameters" in cell.metadata.get("tags", []):
            kinds.append("injected parameters")
    total = sum(k is not None for k in kinds)
    steps, k = [], 0
    for section in kinds:
        k += section is not None
        steps.append(None if section is None else f"code cell {k}/{total} · {section}")
    return steps


def _ipc_kernel_manager():
    """A kernel manager that talks to the kernel over local IPC sockets instead of TCP.

    Over TCP ipykernel warns "Kernel is running over TCP without encryption" at every start.
    The kernel is a child process on this machine, so Unix domain sockets (files in Jupyter's
    runtime folder, readable by this user only) are the right transport, and the warning is
    answered rather than hidden.
    """
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(transport="ipc", **kwargs)

    return IPCKernelManager


def _execute(nb: Path, params: dict, label: str, out: Path) -> None:
    import papermill

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_CellLines(label, cell_steps(nb, injected=bool(params))))
    log = logging.getLogger("papermill")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        papermill.execute_notebook(
            input_path=str(nb),
            output_path=str(out / f"{label}.ipynb"),
            parameters=params,
            cwd=str(paths.NOTEBOOKS),
            kernel_name="python3",
            progress_bar=False,
            log_output=True,
            kernel_manager_class=_ipc_kernel_manager(),
        )
    finally:
        log.removeHandler(handler)


def _link(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` (relative); a real folder in the way is left alone."""
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        print(f"[pipeline] {link} is a folder, not a link: left as it is", flush=True)
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _write_timings(path: Path, timings: list[tuple[str, float]]) -> None:
    """Write the notebooks' wall times; a rerun of some notebooks into an existing run folder
    (``--only``) replaces their rows and keeps the others, in run order."""
    rows: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines()[1:]:
            label, _, sec = line.partition("\t")
            rows[label] = float(sec)
    rows.update(timings)
    order = sorted(rows, key=lambda label: label.split("_")[0])  # stable: 03 sequential, joint
    lines = [f"{label}\t{rows[label]:.1f}" for label in order]
    path.write_text("notebook\tseconds\n" + "\n".join(lines) + "\n")


def run(
    profile_name: str,
    run_name: str | None = None,
    only: list[str] | None = None,
    publish: bool = False,
) -> Path:
    """Execute the planned notebooks into a run folder; returns the folder.

    Args:
        profile_name: ``params/<name>.yaml`` or a path to a YAML profile.
        run_name: folder name under ``runs/`` (default ``<profile>-<time>``).
        only: notebook prefixes to run (default all).
        publish: afterwards copy the run's figures into ``figures/`` and write its tables
            into the README (:func:`bfutils.runs.publish`); off by default, so a run never
            rewrites tracked files unless asked.
    """
    profile = load_profile(profile_name)
    runs = plan_runs(profile, notebook_list(only))
    if not runs:
        raise SystemExit(f"no notebooks match {only}")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = paths.RUNS / (run_name or f"{Path(profile_name).stem}-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"[pipeline] profile {profile_name}: {len(runs)} notebook runs into {out}", flush=True)
    timings = []
    # the kernels inherit this environment: notebooks write everything into the run folder,
    # and their progress bars go to this console; restored afterwards
    saved = {k: os.environ.get(k) for k in ("BFUTILS_RUN_DIR", "BFUTILS_PROGRESS")}
    os.environ["BFUTILS_RUN_DIR"] = str(out)
    os.environ.setdefault("BFUTILS_PROGRESS", "console")
    try:
        for k, (nb, params, label) in enumerate(runs, start=1):
            t0 = time.perf_counter()
            print(f"[pipeline] ({k}/{len(runs)}) {label} {params}", flush=True)
            _execute(nb, params, label, out)
            timings.append((label, time.perf_counter() - t0))
            print(f"[pipeline] {label} done in {timings[-1][1]:.0f} s", flush=True)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    _write_timings(out / "timings.tsv", timings)
    _link(paths.RUNS / "latest", out)
    # the conventional place of the newest run's data, for tools that read the project layout
    # (e.g. ../shared/tools/check_artifacts.py); a link, so runs still own their data
    _link(paths.DATA / "processed", out / "data")
    print(f"[pipeline] run folder: {out} (runs/latest)")
    if publish:
        from bfutils import runs as runs_mod

        runs_mod.publish(out)
        print("[pipeline] published: figures/ and the README results block")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default="smoke", help="params/<profile>.yaml (default smoke)")
    ap.add_argument("--run-name", default=None, help="run folder name under runs/")
    ap.add_argument("--only", nargs="*", default=None, help="notebook prefixes, e.g. 01 02")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    ap.add_argument(
        "--publish",
        action="store_true",
        help="copy the run's figures to figures/ and its tables into README.md afterwards",
    )
    args = ap.parse_args(argv)
    if args.dry_run:
        for nb, params, label in plan_runs(load_profile(args.profile), notebook_list(args.only)):
            print(label, nb.name, params)
        return 0
    run(args.profile, run_name=args.run_name, only=args.only, publish=args.publish)
    return 0


if __name__ == "__main__":
    sys.exit(main())
