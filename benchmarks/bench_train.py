"""Training throughput: our training step next to a bare PyTorch step of the same model.

Run ``python benchmarks/bench_train.py train [--encoder resnet18 --input-size 64 --batch-size 64
--steps 20 --frozen/--no-frozen --real]``. This is a benchmark, not a test: it prints numbers and
asserts nothing about them.

Rows of the table (every row trains the same :class:`bfutils.models.SiameseModel`, built with the
same seed, the same trainable parameters and AdamW):

* ``ours pixel``: one step of :func:`bfutils.train.run_phase` for the ``joint`` schedule with
  ``freeze_backbone=False``. :class:`~bfutils.train.PixelData` draws ``batch_size`` pairs of
  altered views and ``batch_size`` labelled pairs (pair planning, alterations, uint8 -> float,
  resize); :class:`~bfutils.train.Objective` computes L_BCE + lambda * L_BT; then backward,
  AdamW, the cosine learning-rate step, the finite-loss check and the per-term ``.item()`` log.
* ``bare pixel``: random images already in memory (uint8 turned into floats in [0, 1] before
  timing, with the shapes and the channels_last layout of PixelData's batches): embed the four
  batches, head, BCE + Barlow Twins from :mod:`bfutils.losses`, backward, AdamW. No data
  pipeline, no bookkeeping.
* ``ours cached``: the same step with ``freeze_backbone=True``: :class:`~bfutils.train.FeatureData`
  encodes ``cache_views`` altered views of every training image once (the ``setup s`` column),
  then every step draws cached features and trains projector and head only.
* ``bare cached``: random features already in memory through projector and head.
* ``bare frozen pixels``: the frozen encoder run (without gradients) on random images every step,
  i.e. a frozen encoder without the cache; ``ours cached`` / this row is what caching buys.

Counting: one joint step feeds ``4 * batch_size`` images to the model: two views of each of
``batch_size`` images (the Barlow Twins term) and *both* images of ``batch_size`` pairs (the BCE
term). images/s counts all four; on the cached path a feature vector counts as an image.

The ratio ``ours/bare`` is our images/s divided by the bare images/s of the same path. 1.0 would
mean our pipeline is free; 0.4 means that 60% of our step time goes to what the bare step does not
do: pair sampling (planning pairs with pandas, choosing hard-negative partners), altering pixels
(view pairs and altered pairs), uint8 -> float and resizing, and loss bookkeeping (the finite
check and an ``.item()`` per loss term every step, the scheduler). ``draw %`` is the share of our
step time spent inside ``bfutils.train._draw``, i.e. the data part of that overhead on its own.

Timing: each row is built and run for ``warmup`` untimed steps on its own; then the rows take
turns, one step each, for ``steps`` rounds, so a busy shared machine slows them alike, and
images/s and ms/step use the median step time. Every model is built after
``torch.manual_seed(seed)``.

Memory, measured over a row's warm-up steps: on CUDA the allocator's peak
(``torch.cuda.max_memory_allocated``); on the CPU the peak resident set size of the process
(``resource.getrusage``), reset before each row through ``/proc/self/clear_refs`` on Linux after
freed heap pages are returned with ``malloc_trim``. ``peak MB`` thus includes the interpreter,
torch, the data set and the rows built before; ``step +MB`` is the peak minus the memory in use
when the row's warm-up started: what its training steps add. Setup (model, cache) is not counted.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from bfutils import losses, models, pairs, runlog, train

MB = 2**20
VIEW_KEYS = ("v1", "v2", "a", "b")  # the four image batches of one joint step

Step = Callable[[], tuple[int, float]]  # one training step -> (images fed, seconds drawing)


@dataclass
class Settings:
    """What the timing loop needs besides the training config."""

    steps: int
    warmup: int
    device: str


# ----------------------------------------------------------------------------- data
def synthetic_dataset(
    n_groups: int = 16, per_group: int = 8, image_size: int = 160, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """A small manifest of slab-like groups with smooth random images, split by group.

    Args:
        n_groups: Groups (alternately ``mri`` and ``tiles``, so both strata reach every split).
        per_group: Images per group (slices 2 mm apart in two tissues).
        image_size: Side of the stored images, like ``image_size`` of the processed data.
        seed: Seeds pixels and splits.

    Returns:
        ``(manifest, images)`` as :func:`bfutils.prepare.load` returns them, with ``split``.
    """
    rows = [
        {"image_id": f"syn:{g}:{k}", "group": f"syn:g{g}", "modality": "mri" if g % 2 else "tiles",
         "source": "syn", "stack": "T1" if k % 2 else "gm", "stack_kind": "tissue",
         "axis": "axial", "pos": float(g * 20 + 2 * (k // 2)), "pos2": 0.0, "unit": "mm"}
        for g in range(n_groups) for k in range(per_group)
    ]  # fmt: skip
    manifest = pd.DataFrame(rows)
    # smooth fields rather than white noise: JPEG and blur cost what they cost on real images
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(len(rows), 3, 8, 8, generator=gen)
    fine = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear")
    images = (fine * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    manifest["split"] = pairs.assign_splits(manifest, split="70/10/20", seed=seed)
    return manifest, images


def _dataset(real: bool, image_size: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    if not real:
        return synthetic_dataset(image_size=image_size, seed=seed)
    from bfutils import prepare

    return prepare.load()  # raises FileNotFoundError naming the missing file


def _eval_sets(manifest, images, n_pairs: int, seed: int) -> dict:
    """Small val/test pair tables: the data providers need them, the timed steps do not."""
    return {
        s: pairs.make_pairs(manifest, images, split=s, n_pairs=n_pairs, seed=seed, progress=False)
        for s in ("val", "test")
    }


# ----------------------------------------------------------------------------- memory
def _release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc), so RSS counts live memory, not old rows'."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS may include freed memory
        pass


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, else KiB


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / MB
    except OSError:
        return math.nan


class _PeakMemory:
    """Peak memory over a block: CUDA allocator peak, or the process's peak RSS on the CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.kind = "cuda max_memory_allocated" if self.cuda else "process peak RSS"

    def __enter__(self) -> _PeakMemory:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated() / MB
        else:
            _release_freed_memory()
            if not _reset_peak_rss():
                self.kind = "process peak RSS since start (could not reset)"
            self.start = _rss_mb()
        return self

    def __exit__(self, *exc) -> None:
        self.peak = torch.cuda.max_memory_allocated() / MB if self.cuda else _peak_rss_mb()


# ----------------------------------------------------------------------------- steps
def _model(cfg: train.TrainConfig, device: str) -> models.SiameseModel:
    torch.manual_seed(cfg.seed)  # ours and bare start from identical weights
    return models.build_model(
        encoder=cfg.encoder, pretrained=cfg.pretrained, projector_widths=cfg.projector_widths,
        head_hidden=cfg.head_hidden, freeze_backbone=cfg.freeze_backbone,
    ).to(device)  # fmt: skip


def _use_amp(cfg: train.TrainConfig, device: str) -> bool:
    return cfg.amp and device.startswith("cuda")  # as run_phase decides


def ours_step(cfg, manifest, images, eval_sets, device) -> tuple[Step, float]:
    """Our training step: what :func:`bfutils.train.run_phase` does per step, one phase.

    Args:
        cfg: A ``joint`` :class:`bfutils.train.TrainConfig`; ``freeze_backbone`` picks
            FeatureData (cached features) or PixelData (fresh pixels), as ``train.train`` does.
        manifest: Full manifest with ``split``, row-aligned with ``images``.
        images: All images (N, H, W, 3) uint8.
        eval_sets: ``{"val": (pairs, a, b), "test": ...}`` for the data provider.
        device: Resolved torch device.

    Returns:
        ``(step, setup_seconds)``: ``step()`` trains once and returns (images fed, seconds spent
        drawing the batch); setup is the data provider's construction (the cache, if any).
    """
    model = _model(cfg, device)
    t0 = time.perf_counter()
    kind = train.FeatureData if cfg.freeze_backbone else train.PixelData
    data = kind(model, manifest, images, eval_sets, cfg, device)
    setup = time.perf_counter() - t0
    phase = train.phases(cfg)[0]
    objective = train.Objective(model, data, phase, cfg)
    params = train._set_trainable(model, phase)
    opt, sched, scaler = train.optimiser(params, phase, cfg, device=device)
    sums: dict[str, float] = {}

    def step() -> tuple[int, float]:
        t = time.perf_counter()
        batch = train._draw(data, phase, cfg.batch_size)
        drawn = time.perf_counter() - t
        out = train.train_step(objective, batch, opt, sched, scaler, where="bench")
        for key, v in out.items():  # run_phase's per-epoch loss log
            sums[key] = sums.get(key, 0.0) + v.item() / cfg.steps_per_epoch
        return sum(len(batch[k]) for k in VIEW_KEYS if k in batch), drawn

    return step, setup


def _random_batch(model, cfg, device: str, features: bool) -> dict:
    """Four random input batches and labels, already on the device (outside the timing)."""
    n, s = cfg.batch_size, cfg.input_size
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = {}
    for key in VIEW_KEYS:
        if features:
            batch[key] = torch.rand(n, model.encoder.num_features, generator=gen).to(device)
        else:
            x = torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, generator=gen)
            # PixelData permutes NHWC pixels, so its batches are channels_last on every device;
            # in NCHW the bare efficientnet_lite0 step ran 1.4x slower on the CPU (84 vs 114 img/s)
            x = x.to(device).float().div_(255.0).contiguous(memory_format=torch.channels_last)
            batch[key] = x
    batch["y"] = torch.randint(0, 2, (n,), generator=gen).float().to(device)
    return batch


def bare_step(cfg: train.TrainConfig, device: str, features: bool = False) -> tuple[Step, float]:
    """The bare PyTorch step: same model and losses on random tensors already in memory.

    Args:
        cfg: The config our step uses (model, batch size, loss weights, AMP choice).
        device: Resolved torch device.
        features: Feed random encoder features to the projector (the cached path's shapes)
            instead of random images to the whole model.

    Returns:
        ``(step, 0.0)``: ``step()`` trains once and returns (images fed, 0.0).
    """
    model = _model(cfg, device)
    params = train._set_trainable(model, train.phases(cfg)[0])  # the same trainable parameters
    batch = _random_batch(model, cfg, device=device, features=features)
    embed = model.projector if features else model.embed
    opt = torch.optim.AdamW(params, lr=cfg.lr_start, weight_decay=cfg.weight_decay)
    use_amp = _use_amp(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def step() -> tuple[int, float]:
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            z1, z2, za, zb = (embed(batch[k]) for k in VIEW_KEYS)
            bt = losses.barlow_twins_loss(
                z1.float(), z2.float(), redundancy_weight=cfg.redundancy_weight
            )
            bce = losses.pair_bce_loss(model.head(za, zb).float(), batch["y"])
            total = bce + cfg.bt_weight * bt
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()
        return len(VIEW_KEYS) * cfg.batch_size, 0.0

    return step, 0.0


# ----------------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def warm_up(step: Step, settings: Settings) -> dict:
    """Run the untimed warm-up steps of one row alone, measuring its peak memory.

    Returns:
        ``{"peak_mb", "step_mb", "memory"}``.
    """
    with _PeakMemory(settings.device) as mem:
        for _ in range(settings.warmup):
            step()
        _sync(settings.device)
    # RSS and its peak come from different calls: clip the rounding below zero
    return {"peak_mb": mem.peak, "step_mb": max(0.0, mem.peak - mem.start), "memory": mem.kind}


def time_interleaved(steps: list[Step], settings: Settings) -> list[dict]:
    """Time ``settings.steps`` steps of every row, round-robin.

    Interleaving gives every row the same share of whatever else the machine is doing (on a
    shared machine, timing rows one after another made the first row up to 2x slower or
    faster); the median step time ignores the bursts that remain.

    Returns:
        One ``{"images_per_s", "ms_per_step", "draw_share"}`` per step function.
    """
    seconds = [[] for _ in steps]
    images, drawn = [0] * len(steps), [0.0] * len(steps)
    for _ in range(settings.steps):
        for k, step in enumerate(steps):
            t0 = time.perf_counter()
            images[k], d = step()
            _sync(settings.device)
            seconds[k].append(time.perf_counter() - t0)
            drawn[k] += d
    out = []
    for k in range(len(steps)):
        median = float(np.median(seconds[k]))
        out.append({"images_per_s": images[k] / median, "ms_per_step": 1000 * median,
                    "draw_share": drawn[k] / sum(seconds[k])})  # fmt: skip
    return out


def _warm_row(variant: str, path: str, setup: tuple[Step, float], settings: Settings) -> dict:
    step, setup_s = setup
    row = {"variant": variant, "path": path, "ours": variant.startswith("ours"), "step": step}
    return row | warm_up(step, settings) | {"setup_s": setup_s}


def _add_ratios(rows: list[dict]) -> list[dict]:
    """ours/bare of the same path; bare rows are their own reference (1.0)."""
    bare = {r["path"]: r["images_per_s"] for r in rows if not r["ours"]}
    for r in rows:
        r["ratio"] = r["images_per_s"] / bare[r["path"]]
    return rows


# ----------------------------------------------------------------------------- entry points
def _check_args(batch_size: int, steps: int, warmup: int, input_size: int, cache_views: int):
    if batch_size < 2:
        raise ValueError(
            f"batch_size must be at least 2 (BatchNorm and the Barlow Twins loss take batch "
            f"statistics), got {batch_size}"
        )
    if steps < 1 or warmup < 1:
        raise ValueError(
            f"steps and warmup must be >= 1 (warm-up steps measure memory), got steps={steps}, "
            f"warmup={warmup}"
        )
    if input_size < 8:
        raise ValueError(f"input_size must be at least 8 pixels, got {input_size}")
    if cache_views < 2:
        raise ValueError(
            f"cache_views must be at least 2 (positives need two views), got {cache_views}"
        )


def benchmark_train(
    encoder: str = "resnet18",
    input_size: int = 64,
    batch_size: int = 64,
    steps: int = 20,
    warmup: int = 2,
    frozen: bool = True,
    real: bool = False,
    image_size: int = 160,
    cache_views: int = 8,
    pretrained: str | None = None,
    device: str = "auto",
    seed: int = 0,
) -> list[dict]:
    """Time our joint training step against a bare PyTorch step of the same model and batch.

    Args:
        encoder: Encoder name (see :data:`bfutils.models.ENCODERS`).
        input_size: Side the model sees.
        batch_size: Pairs (and view pairs) per step; each step feeds ``4 * batch_size`` images.
        steps: Timed steps per row.
        warmup: Untimed steps before them.
        frozen: Add the frozen-backbone rows (cached features, and the frozen encoder on pixels).
        real: Use the processed data (:func:`bfutils.prepare.load`) instead of synthetic images.
        image_size: Side of the synthetic stored images (ignored with ``real``).
        cache_views: Altered views per training image cached on the frozen path.
        pretrained: Encoder weights (see :func:`bfutils.models.build_encoder`); None: random
            initialisation, which trains at the same speed and downloads nothing.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        seed: Seeds data, pairs and weights.

    Returns:
        One dict per row: ``variant, path, ours, images_per_s, ratio, ms_per_step, draw_share,
        peak_mb, step_mb, memory, setup_s`` (see the module docstring).
    """
    _check_args(batch_size, steps=steps, warmup=warmup, input_size=input_size,
                cache_views=cache_views)  # fmt: skip
    device = runlog.resolve_device(device)
    manifest, images = _dataset(real, image_size=image_size, seed=seed)
    eval_sets = _eval_sets(manifest, images, n_pairs=16, seed=seed)
    cfg = train.TrainConfig(
        schedule="joint", encoder=encoder, pretrained=pretrained, freeze_backbone=False,
        input_size=input_size, batch_size=batch_size, epochs=1, steps_per_epoch=warmup + steps,
        cache_views=cache_views, device=device, seed=seed,
    )  # fmt: skip
    settings = Settings(steps=steps, warmup=warmup, device=device)
    fcfg = replace(cfg, freeze_backbone=True)
    # built and warmed one at a time, so each row's memory is measured without the next one
    makers = [
        ("bare pixel", "pixel", lambda: bare_step(cfg, device)),
        ("ours pixel", "pixel", lambda: ours_step(cfg, manifest, images, eval_sets, device)),
        ("bare frozen pixels", "frozen_pixels", lambda: bare_step(fcfg, device)),
        ("bare cached", "cached", lambda: bare_step(fcfg, device, features=True)),
        ("ours cached", "cached", lambda: ours_step(fcfg, manifest, images, eval_sets, device)),
    ]
    rows = [_warm_row(v, p, make(), settings) for v, p, make in makers[: 5 if frozen else 2]]
    timed = time_interleaved([r.pop("step") for r in rows], settings)
    rows = [r | t for r, t in zip(rows, timed, strict=True)]
    return _add_ratios(rows)


def format_table(rows: list[dict]) -> str:
    """The rows as a fixed-width table with notes on counting, memory and caching."""
    head = f"{'variant':<20}{'images/s':>10}{'ours/bare':>11}{'ms/step':>10}{'draw %':>8}"
    head += f"{'peak MB':>9}{'step +MB':>10}{'setup s':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['variant']:<20}{r['images_per_s']:>10.1f}{r['ratio']:>11.2f}"
            f"{r['ms_per_step']:>10.0f}{100 * r['draw_share']:>8.0f}{r['peak_mb']:>9.0f}"
            f"{r['step_mb']:>10.0f}{r['setup_s']:>9.1f}"
        )
    lines.append(
        "images/s counts every image fed: both views of each view pair and both images of each "
        "pair (4 x batch size per step; a cached feature vector counts as an image)."
    )
    lines.append(f"memory: {rows[0]['memory']}; step +MB = peak minus memory in use at the start.")
    by = {r["variant"]: r for r in rows}
    if "ours cached" in by:
        speedup = by["ours cached"]["images_per_s"] / by["bare frozen pixels"]["images_per_s"]
        lines.append(f"caching speedup (ours cached / bare frozen pixels): {speedup:.1f}x")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench_train.py", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="images/s of our training step vs a bare PyTorch step")
    p.add_argument("--encoder", default="resnet18", choices=sorted(models.ENCODERS))
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--frozen", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the frozen-backbone rows (cached features)")  # fmt: skip
    p.add_argument("--real", action="store_true", help="use data/processed, not synthetic images")
    p.add_argument("--image-size", type=int, default=160, help="side of the synthetic images")
    p.add_argument("--cache-views", type=int, default=8)
    p.add_argument("--pretrained", default=None, help="encoder weights (default: random init)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    parser = _parser()
    args = vars(parser.parse_args(argv))
    args.pop("command")
    threads = args.pop("threads")
    if threads is not None:
        if threads < 1:
            parser.exit(2, f"bench train: --threads must be >= 1, got {threads}\n")
        torch.set_num_threads(threads)  # this process only: it is the benchmark's own
    try:
        rows = benchmark_train(**args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        parser.exit(2, f"bench train: {err}\n")
    settings = ", ".join(f"{k}={v}" for k, v in args.items())
    print(f"bench train ({settings}; torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(format_table(rows))


if __name__ == "__main__":
    main()
