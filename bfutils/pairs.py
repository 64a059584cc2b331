"""Leakage-free splits and labelled image pairs.

A *pair* is (a, b, label): label 1 when b was derived from the same source image as a by an
alteration from :mod:`bfutils.augment` (``(x, A(x))`` or ``(A1(x), A2(x))``), label 0 when a and
b come from two distinct source images. Negatives are

* ``easy``: the other image comes from another group (in the same split), and is never a
  near-identical image;
* ``hard``: the other image comes from the same group: a neighbouring slice, an adjacent
  tile, a consecutive frame, the same position in another tissue volume. ``hard_detail``
  records which and how far (``slice+4mm``, ``tile+1``, ``tissue``, ``frame+1``).

Negatives get alterations on one or both sides too (``altered_negative_share``), so that
"was anything altered?" cannot answer "was b derived from a?".

Pairs are *planned* from the manifest (indices, labels, alterations; no pixels), then
*materialized* by applying the alterations. Validation and test pairs are materialized once
and saved, so every model is scored on identical pixels; training pairs are planned on the
fly by :class:`PairSampler` with the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bfutils import augment
from bfutils.progress import bar as tqdm

SPLITS = ("train", "val", "test")
PAIR_COLUMNS = [
    "pair_id", "split", "image_a", "image_b", "label", "family", "family_a", "alter_a",
    "alter_b", "negative_kind", "hard_detail", "group_a", "group_b", "modality_a",
    "modality_b", "idx_a", "idx_b",
]  # fmt: skip
_UNIT_NOUN = {"mm": "slice", "tile": "tile", "frame": "frame", "block": "block"}


# ----------------------------------------------------------------------------- splits
def parse_split(split: str) -> dict[str, float]:
    """``"70/10/20"`` -> train/val/test fractions; ``"80/20"`` -> 72/8/20.

    With two numbers the validation set (needed to choose thresholds) is carved from the
    training share: a tenth of it, so "80/20" keeps 20% of the groups untouched for test.
    """
    try:
        parts = [float(p) for p in split.split("/")]
    except ValueError as err:
        raise ValueError(f"split {split!r} must look like '70/10/20' or '80/20'") from err
    if len(parts) == 2:
        parts = [parts[0] * 0.9, parts[0] * 0.1, parts[1]]
    if len(parts) != 3 or min(parts) <= 0:
        raise ValueError(f"split {split!r} must give three positive shares (train/val/test)")
    total = sum(parts)
    return dict(zip(SPLITS, (p / total for p in parts), strict=True))


def assign_splits(manifest: pd.DataFrame, split: str = "70/10/20", seed: int = 0) -> pd.Series:
    """Assign every group to one split, stratified by the group's modalities.

    Groups are shuffled (seeded) within each stratum and handed one by one to the split
    whose image count lies furthest below its target share, so each split gets every kind
    of image and no group is ever divided.

    Returns:
        A Series of split names aligned with ``manifest``.
    """
    fractions = parse_split(split)
    rng = np.random.default_rng(seed)
    sizes = manifest.groupby("group").size()
    strata = manifest.groupby("group")["modality"].agg(lambda m: ",".join(sorted(set(m))))
    split_of: dict[str, str] = {}
    for stratum in sorted(strata.unique()):
        groups = sorted(strata.index[strata == stratum])
        rng.shuffle(groups)
        counts = dict.fromkeys(SPLITS, 0)
        for i, g in enumerate(groups):
            # the first three groups seed train, test, val so small strata reach every split
            if i < 3 and len(groups) >= 3:
                name = ("train", "test", "val")[i]
            else:
                total = sum(counts.values()) + sizes[g]
                name = max(SPLITS, key=lambda s: fractions[s] * total - counts[s])
            split_of[g] = name
            counts[name] += sizes[g]
    out = manifest["group"].map(split_of)
    check_disjoint(manifest.assign(split=out))
    return out


def check_disjoint(manifest: pd.DataFrame) -> None:
    """Raise if any group appears in more than one split."""
    n_splits = manifest.groupby("group")["split"].nunique()
    bad = n_splits[n_splits > 1]
    if len(bad):
        raise AssertionError(f"{len(bad)} groups straddle splits, e.g. {list(bad.index[:3])}")


# ----------------------------------------------------------------------------- detail
def hard_detail(ra: pd.Series, rb: pd.Series) -> str:
    """Say what separates two images of one group: ``slice+4mm``, ``tile+1``, ``tissue``...

    Built from the manifest's ``stack``/``stack_kind``/``axis``/``pos``/``pos2``/``unit``.
    """
    parts = []
    if ra["stack"] != rb["stack"]:
        parts.append(ra["stack_kind"] or "stack")
    if ra["axis"] != rb["axis"]:
        parts.append("axis")
    elif ra["unit"]:
        d = max(
            abs(float(ra["pos"]) - float(rb["pos"])), abs(float(ra["pos2"]) - float(rb["pos2"]))
        )
        if d > 0:
            noun = _UNIT_NOUN.get(ra["unit"], ra["unit"])
            parts.append(f"{noun}+{d:g}{'mm' if ra['unit'] == 'mm' else ''}")
    # no coordinates (e.g. DSB 2018 tiles of one acquisition): distinct images of one group
    return ",".join(parts) or "sibling"


def coarse_detail(detail: str) -> str:
    """``tissue,slice+4mm`` -> ``tissue+slice``; ``slice+2.2mm`` -> ``slice 2-3mm``...

    Hard negatives of the same kind at similar distance are pooled so each cell of the
    breakdown holds enough pairs to mean something.
    """
    if not detail:
        return "easy"
    parts = detail.split(",")
    if len(parts) > 1:
        return "+".join(re.sub(r"\+.*", "", p) for p in parts)
    m = re.fullmatch(r"slice\+([\d.]+)mm", detail)
    if m:
        d = float(m.group(1))
        return "slice <=2.2mm" if d <= 2.2 else ("slice 4-6.6mm" if d <= 6.6 else "slice >6.6mm")
    return re.sub(r"\+\d+$", "", detail) if detail.startswith(("frame", "block")) else detail


def thumbnails(images: np.ndarray, size: int = 24) -> np.ndarray:
    """Zero-mean unit-norm grey thumbnails, for the near-identical check."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).float().mean(dim=3, keepdim=True).permute(0, 3, 1, 2)
    t = F.adaptive_avg_pool2d(x, size).flatten(1)
    t = t - t.mean(dim=1, keepdim=True)
    return (t / t.norm(dim=1, keepdim=True).clamp_min(1e-6)).numpy()


# ----------------------------------------------------------------------------- planning
@dataclass
class PairConfig:
    """How pairs are drawn. Defaults follow the paper's protocol (40% positives).

    Attributes:
        positive_share: share of pairs with label 1.
        hard_share: share of negatives that are hard (same group, another image).
        two_sided_share: share of positives made as (A1(x), A2(x)) rather than (x, A(x)).
        altered_negative_share: share of negatives whose sides are altered too.
        near_identical: thumbnail correlation above which two images of different groups
            count as near-identical and are never used as an easy negative.
        step_mm: slice spacing, to turn millimetres into steps when weighting hard partners.
    """

    positive_share: float = 0.4
    hard_share: float = 0.4
    two_sided_share: float = 0.5
    altered_negative_share: float = 0.5
    near_identical: float = 0.97
    step_mm: float = 2.0

    def __post_init__(self):
        for name in ("positive_share", "hard_share", "two_sided_share", "altered_negative_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v}")


class PairPlanner:
    """Draws pair plans (indices, labels, alterations) from the images of one split.

    Args:
        manifest: rows of one split (``image_id, group, stack, stack_kind, axis, pos, pos2,
            unit, modality``), in the order of ``images``' first axis if ``index`` is absent.
        thumbs: near-identical check thumbnails from :func:`thumbnails`, one per row.
        config: a :class:`PairConfig`.
        index: positions of the rows in the full image array (default 0..n-1).
    """

    def __init__(self, manifest, thumbs, config=None, index=None):
        self.m = manifest.reset_index(drop=True)
        self.cfg = config or PairConfig()
        self.thumbs = thumbs
        self.index = np.arange(len(self.m)) if index is None else np.asarray(index)
        codes, _ = pd.factorize(self.m["group"])
        self.group_code = codes
        # plain arrays: pair planning runs every training step, pandas row access is too slow
        self.col = {c: self.m[c].to_numpy() for c in ("image_id", "group", "modality", "unit")}
        self.pos = self.m[["pos", "pos2"]].to_numpy(dtype=float)
        self.stack = self.m["stack"].to_numpy()
        self.members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
        if len(self.members) < 2:
            raise ValueError("a split needs at least two groups to draw easy negatives")

    def _hard_partner(self, i: int, rng: np.random.Generator) -> int | None:
        mates = self.members[self.group_code[i]]
        mates = mates[mates != i]
        if not len(mates):
            return None
        # prefer the near neighbours: the closer, the more a distinct image can pass for a copy
        w = 1.0 / self._steps(i, mates)
        return int(rng.choice(mates, p=w / w.sum()))

    def _steps(self, i: int, js: np.ndarray) -> np.ndarray:
        """Distance in acquisition steps (slices, tiles, frames); another stack adds one step.

        Images without coordinates (siblings of one acquisition) count as one step apart.
        """
        d = np.abs(self.pos[js] - self.pos[i]).max(axis=1)
        if self.col["unit"][i] == "mm":
            d = d / self.cfg.step_mm
        return np.maximum(1.0, d + (self.stack[js] != self.stack[i]))

    def _easy_partner(self, i: int, rng: np.random.Generator) -> int:
        for _ in range(100):
            j = int(rng.integers(len(self.m)))
            if self.group_code[j] == self.group_code[i]:
                continue
            if float(self.thumbs[i] @ self.thumbs[j]) < self.cfg.near_identical:
                return j
        raise RuntimeError(f"no easy partner for {self.m.at[i, 'image_id']} in 100 draws")

    def plan(self, n: int, rng: np.random.Generator, families=None) -> pd.DataFrame:
        """Plan ``n`` pairs. Positives cycle through the families so each one occurs.

        Returns:
            One row per pair with the columns of :data:`PAIR_COLUMNS` but ``pair_id``/``split``.
        """
        families = list(families or augment.FAMILIES)
        n_pos = int(round(n * self.cfg.positive_share))
        cycle = [f for _ in range(n_pos // len(families) + 1) for f in rng.permutation(families)]
        rows = [self._positive(rng, cycle[k]) for k in range(n_pos)]
        rows += [self._negative(rng) for _ in range(n - n_pos)]
        order = rng.permutation(len(rows))
        return pd.DataFrame([rows[k] for k in order])

    def _row(self, i, j, label, alt_a, alt_b, kind="", detail=""):
        c = self.col
        return {
            "image_a": c["image_id"][i], "image_b": c["image_id"][j], "label": label,
            "family": alt_b.family if alt_b else (alt_a.family if alt_a else ""),
            "family_a": alt_a.family if (alt_a and alt_b) else "",
            "alter_a": alt_a.to_json() if alt_a else "",
            "alter_b": alt_b.to_json() if alt_b else "",
            "negative_kind": kind, "hard_detail": detail,
            "group_a": c["group"][i], "group_b": c["group"][j],
            "modality_a": c["modality"][i], "modality_b": c["modality"][j],
            "idx_a": int(self.index[i]), "idx_b": int(self.index[j]),
        }  # fmt: skip

    def _positive(self, rng, family):
        i = int(rng.integers(len(self.m)))
        alt_b = augment.sample(family, rng)
        alt_a = augment.random_alteration(rng) if rng.random() < self.cfg.two_sided_share else None
        return self._row(i, i, 1, alt_a, alt_b)

    def _negative(self, rng):
        i = int(rng.integers(len(self.m)))
        j = self._hard_partner(i, rng) if rng.random() < self.cfg.hard_share else None
        kind = "easy" if j is None else "hard"
        if j is None:
            j = self._easy_partner(i, rng)
        alt_a = alt_b = None
        if rng.random() < self.cfg.altered_negative_share:
            alt_b = augment.random_alteration(rng)
            if rng.random() < 0.5:
                alt_a = augment.random_alteration(rng)
        detail = hard_detail(self.m.iloc[i], self.m.iloc[j]) if kind == "hard" else ""
        return self._row(i, j, 0, alt_a, alt_b, kind=kind, detail=detail)


def materialize(plan: pd.DataFrame, images: np.ndarray, progress: bool = True):
    """Apply each planned alteration; returns ``(a, b)`` uint8 arrays (N, H, W, 3)."""
    a = np.empty((len(plan), *images.shape[1:]), dtype=np.uint8)
    b = np.empty_like(a)
    rows = plan[["idx_a", "idx_b", "alter_a", "alter_b"]].itertuples(index=False)
    for k, (ia, ib, ja, jb) in enumerate(
        tqdm(rows, total=len(plan), desc="alter pairs", disable=not progress)
    ):
        a[k] = augment.apply(images[ia], augment.Alteration.from_json(ja)) if ja else images[ia]
        b[k] = augment.apply(images[ib], augment.Alteration.from_json(jb)) if jb else images[ib]
    return a, b


def make_pairs(
    manifest: pd.DataFrame,
    images: np.ndarray,
    split: str,
    n_pairs: int,
    seed: int,
    config: PairConfig | None = None,
    progress: bool = True,
):
    """Plan and materialize ``n_pairs`` pairs from the images of one split.

    Args:
        manifest: the full manifest with a ``split`` column, row k describing ``images[k]``.
        images: all images (N, H, W, 3) uint8.
        split: ``"val"`` or ``"test"`` (or ``"train"`` for a fixed training set).
        n_pairs: number of pairs.
        seed: the same seed gives the same pairs, alterations and pixels.
        config: a :class:`PairConfig`.
        progress: show a tqdm bar while altering images.

    Returns:
        ``(pairs, a, b)``: the pair table and the two image arrays, row-aligned.
    """
    if len(manifest) != len(images):
        raise ValueError(f"manifest has {len(manifest)} rows but there are {len(images)} images")
    index = np.flatnonzero(manifest["split"].to_numpy() == split)
    if not len(index):
        raise ValueError(f"no images in split {split!r}")
    sub = manifest.iloc[index]
    planner = PairPlanner(sub, thumbnails(images[index]), config=config, index=index)
    # one stream per split so that val and test pairs do not depend on each other's sizes
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    plan = planner.plan(n_pairs, rng)
    plan.insert(0, "split", split)
    # the dataset's fingerprint in the id: predictions made on another dataset's pairs can never
    # be joined to these by accident (pair ids alone would repeat across datasets)
    tag = dataset_tag(manifest, seed)
    plan.insert(0, "pair_id", [f"{split}-{tag}-{k:05d}" for k in range(len(plan))])
    a, b = materialize(plan, images, progress=progress)
    return plan[PAIR_COLUMNS], a, b


def dataset_tag(manifest: pd.DataFrame, seed: int) -> str:
    """Six hex digits identifying the images, their splits and the pair seed."""
    import hashlib

    key = "\n".join(manifest["image_id"].astype(str) + ":" + manifest["split"].astype(str))
    return hashlib.sha1(f"{key}\n{seed}".encode()).hexdigest()[:6]


class PairSampler:
    """Training pairs drawn on the fly with the same rules as the evaluation pairs.

    Args:
        manifest: full manifest with ``split``; only ``train`` rows are used.
        images: all images, row-aligned with ``manifest``.
        seed: seeds the stream of pairs.
        config: a :class:`PairConfig` (same positive share as evaluation by default).
    """

    def __init__(self, manifest, images, seed=0, config=None, split="train"):
        self.images = images
        self.index = np.flatnonzero(manifest["split"].to_numpy() == split)
        sub = manifest.iloc[self.index]
        self.planner = PairPlanner(sub, thumbnails(images[self.index]), config, self.index)
        self.rng = np.random.default_rng([seed, 99])

    def plan(self, n: int) -> pd.DataFrame:
        """Plan ``n`` pairs (no pixels)."""
        return self.planner.plan(n, self.rng)

    def batch(self, n: int):
        """``(a, b, labels, plan)`` for ``n`` freshly drawn training pairs."""
        plan = self.plan(n)
        a, b = materialize(plan, self.images, progress=False)
        return a, b, plan["label"].to_numpy(dtype=np.float32), plan


# ----------------------------------------------------------------------------- io
def save_pairs(pairs: pd.DataFrame, a: np.ndarray, b: np.ndarray, folder, split: str) -> None:
    """Write ``pairs_<split>.csv`` and the materialized pixels ``pairs_<split>.npz``."""
    pairs.to_csv(folder / f"pairs_{split}.csv", index=False)
    np.savez_compressed(
        folder / f"pairs_{split}.npz", a=a, b=b, pair_id=pairs["pair_id"].to_numpy(dtype=str)
    )


def load_pairs(folder, split: str):
    """Read back ``(pairs, a, b)`` written by :func:`save_pairs`, checking they line up."""
    csv, npz = folder / f"pairs_{split}.csv", folder / f"pairs_{split}.npz"
    for p in (csv, npz):
        if not p.exists():
            raise FileNotFoundError(f"{p} is missing: run notebook 02_make_pairs first")
    pairs = pd.read_csv(csv, keep_default_na=False)
    with np.load(npz, allow_pickle=False) as z:
        a, b, ids = z["a"], z["b"], z["pair_id"]
    if list(ids) != list(pairs["pair_id"]):
        raise ValueError(f"{csv} and {npz} disagree on pair ids: re-run 02_make_pairs")
    return pairs, a, b
