"""The calibration set: figure-realistic planted panels, from images the evaluation benchmark
does not use.

The default detector is calibrated on what the finder will meet: panels made exactly as the
planted figure benchmark makes them (:mod:`bfutils.planted`: every alteration family, partial
crops and overlaps, 40-400 px, labels, arrows, scale bars, JPEG 50-90, sibling distractors),
but from a different seed and, above all, from **other source images**: every image that the
evaluation benchmark (``planted.build`` with seed 0, 1,000 panels, 200 planted: the one the
README reports) draws from is left out (:func:`heldout_ids`). So no source image, planted copy
or distractor of the evaluation benchmark is ever seen while fitting or choosing a threshold.

Without ``../shared/data`` the pool is the embedded images only; the evaluation benchmark built
from them uses every one of them, so nothing can be held out, and :func:`build` says so in its
notes (the detector's provenance records them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bfutils import planted
from bfutils.data import record_pixels

EVAL_BENCHMARK = {"seed": 0, "n_panels": 1000, "n_planted": 200}
"""The evaluation benchmark whose source images calibration must not see."""


GRAPHICS_FIRST_GROUP = 16
"""First drawn experiment of the calibration set; the planted benchmark draws 0-15."""


def _pool_size(pool: pd.DataFrame, n_panels: int, n_planted: int) -> int:
    """``n_panels`` as :func:`bfutils.planted.build` shrinks it for a small pool."""
    return min(n_panels, len(pool) + n_planted)


def heldout_ids(pool: pd.DataFrame, seed: int, n_panels: int, n_planted: int) -> set[str]:
    """Image ids that ``planted.build(seed=seed, ...)`` on this pool draws from.

    :func:`bfutils.planted.build` seeds one generator and draws its bases first, so the same
    draw on the same pool gives the same images without rendering a panel.
    """
    n_panels = _pool_size(pool, n_panels, n_planted)
    rng = np.random.default_rng(seed)
    bases, siblings, randoms = planted._pick_bases(pool, n_planted, n_panels - 2 * n_planted, rng)
    used = bases + [j for j, _ in siblings] + randoms
    return set(pool.loc[used, "image_id"])


def build(
    n_panels: int = 600,
    n_planted: int = 150,
    seed: int = 1,
    holdout: dict | None = None,
    exclude: set[str] | None = None,
    sources: tuple[str, ...] = planted.SOURCES,
) -> tuple[list[np.ndarray], pd.DataFrame, pd.DataFrame, list[str]]:
    """Planted panels in memory, from images the evaluation benchmark does not use.

    Args:
        n_panels: panels in total (shrunk when the held-out pool is small).
        n_planted: planted (query, source) pairs.
        seed: seeds every draw (use another seed than the evaluation benchmark's).
        holdout: the evaluation benchmark to hold out (:data:`EVAL_BENCHMARK` by default).
        exclude: image ids to leave out as well (e.g. a model's training images, so that the
            set can validate it); always honoured, and counted in the notes.
        sources: where the panels come from (:data:`bfutils.planted.ALL_SOURCES`). Drawn
            ``graphics`` come from experiments :data:`GRAPHICS_FIRST_GROUP` on, which no
            planted benchmark draws from.

    Returns:
        ``(images, panels, truth, notes)``: decoded RGB uint8 panels as written to a figure;
        ``panels`` with ``image_id``, ``group``, ``source`` and ``role`` per image; ``truth``
        with ``query``, ``source`` (indices into ``images``) and ``family``; notes on the data.
    """
    eval_pool, notes = planted.load_pool()
    # the benchmark's own draw, on the pool it is built from (before any exclusion)
    held = heldout_ids(eval_pool, **(holdout or EVAL_BENCHMARK))
    pool = eval_pool[eval_pool["source"].isin(sources)]
    extra = [name for name in sources if name not in planted.SOURCES]  # read once, not twice
    if extra:
        options = {"graphics": {"first_group": GRAPHICS_FIRST_GROUP}}
        more, more_notes = planted.load_pool(extra, options=options)
        pool = pd.concat([pool, more], ignore_index=True)
        notes += more_notes
    excluded = pool["image_id"].isin(exclude or ())
    if exclude:
        notes.append(f"left out {int(excluded.sum())} excluded images (e.g. training images)")
    free = pool[~excluded & ~pool["image_id"].isin(held)]
    if len(free) < 2 * n_planted:
        notes.append(f"only {len(free)} images outside the evaluation benchmark: built from "
                     "images it also uses (no hold-out)")  # fmt: skip
        free = pool[~excluded]
    else:
        notes.append(f"held out the {len(held)} images of the evaluation benchmark "
                     f"(seed {(holdout or EVAL_BENCHMARK)['seed']})")  # fmt: skip
    free = free.reset_index(drop=True)
    n_panels = _pool_size(free, n_panels, n_planted)
    rng = np.random.default_rng(seed)
    bases, siblings, randoms = planted._pick_bases(free, n_planted, n_panels - 2 * n_planted, rng)
    families = planted._families(n_planted, rng)
    jobs = [("planted", i, f) for i, f in zip(bases, families, strict=True)]
    jobs += [("distractor", j, None) for j, _ in siblings] + [
        ("distractor", i, None) for i in randoms
    ]
    seeds = rng.integers(2**63, size=len(jobs))
    images, rows, truth = [], [], []
    for (kind, i, family), s in zip(jobs, seeds, strict=True):
        rec, job_rng = free.loc[i], np.random.default_rng(s)
        base = record_pixels(rec)
        if kind == "planted":
            src, qry, _ = planted._planted(base, family, job_rng)
            made = [("source", src), ("query", qry)]
            truth.append((len(images) + 1, len(images), family))
        else:
            made = [("distractor", planted._distractor(base, job_rng))]
        for role, (data, *_rest) in made:
            images.append(planted._decode(data))
            rows.append({"image_id": rec.image_id, "group": rec.group, "source": rec.source,
                         "role": role})  # fmt: skip
    return (images, pd.DataFrame(rows), pd.DataFrame(truth, columns=["query", "source", "family"]),
            notes)  # fmt: skip
