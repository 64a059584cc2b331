"""Steps of notebooks 01 (data) and 02 (pairs): build, split, save and reload the dataset."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bfutils import data, pairs, paths

MANIFEST_COLUMNS = ["image_id", "group", "modality", "source", "split"]


def source_specs(sources: str, data_root: str = "") -> list[dict]:
    """Turn notebook parameters into source specs.

    Args:
        sources: comma-separated names, e.g. ``"embedded"`` or ``"dsb2018,bccd"``.
        data_root: comma-separated roots, one per source (empty entries allowed). An empty root
            for ``dsb2018``/``bccd``/``haxby`` means: the read-only copy in ``../shared/data``
            when present, else the public download.

    Returns:
        ``[{"source": name, "root": path_or_None}, ...]``.
    """
    names = [s.strip() for s in sources.split(",") if s.strip()]
    roots = [r.strip() for r in data_root.split(",")] if data_root else []
    if roots and len(roots) != len(names):
        raise ValueError(f"data_root gives {len(roots)} roots for {len(names)} sources {names}")
    shared_name = {"dsb2018": "dsb2018", "bccd": "bccd", "haxby": "haxby2001-subset"}
    specs = []
    for k, name in enumerate(names):
        if name not in data.list_sources():
            raise ValueError(f"unknown source {name!r}; known: {data.list_sources()}")
        root = roots[k] if roots and roots[k] else None
        if root is None and name in shared_name and paths.shared(shared_name[name]).exists():
            root = str(paths.shared(shared_name[name]))
        if name == "folder" and root is None:
            raise ValueError("source 'folder' needs a data_root")
        specs.append({"source": name, "root": root})
    return specs


def build(
    sources: str,
    data_root: str,
    image_size: int,
    split: str,
    seed: int,
    on_error: str = "raise",
    max_per_source: int = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Load every source, subsample if asked, assign leakage-free splits.

    Returns:
        ``(manifest, images)`` with ``images[k]`` the pixels of manifest row ``k``.
    """
    frames, arrays = [], []
    for spec in source_specs(sources, data_root):
        rec, imgs = data.build_dataset([spec], size=image_size, on_error=on_error)
        if max_per_source and len(rec) > max_per_source:
            # subsample whole groups so a smaller set keeps the grouping intact
            groups = rec["group"].drop_duplicates().sample(frac=1.0, random_state=seed)
            sizes = rec.groupby("group").size()[groups].cumsum()
            keep = rec["group"].isin(sizes.index[sizes.to_numpy() <= max_per_source]).to_numpy()
            rec, imgs = rec[keep].reset_index(drop=True), imgs[keep]
        frames.append(rec)
        arrays.append(imgs)
    manifest = pd.concat(frames, ignore_index=True)
    images = np.concatenate(arrays)
    dup = manifest["image_id"][manifest["image_id"].duplicated()]
    if len(dup):
        raise ValueError(f"duplicate image ids across sources, e.g. {list(dup[:3])}")
    manifest["split"] = pairs.assign_splits(manifest, split=split, seed=seed)
    return manifest, images


def save(manifest: pd.DataFrame, images: np.ndarray, params: dict) -> None:
    """Write ``manifest.csv``, ``images.npz`` and ``dataset.json`` into ``data/processed``."""
    paths.PROCESSED.mkdir(parents=True, exist_ok=True)
    cols = MANIFEST_COLUMNS + [c for c in manifest.columns if c not in MANIFEST_COLUMNS]
    manifest[cols].to_csv(paths.PROCESSED / "manifest.csv", index=False)
    np.savez_compressed(paths.PROCESSED / "images.npz", images=images)
    (paths.PROCESSED / "dataset.json").write_text(json.dumps(params, indent=2))


def load() -> tuple[pd.DataFrame, np.ndarray]:
    """Read back what :func:`save` wrote, checking rows and images line up."""
    man_p, img_p = paths.PROCESSED / "manifest.csv", paths.PROCESSED / "images.npz"
    for p in (man_p, img_p):
        if not p.exists():
            raise FileNotFoundError(f"{p} is missing: run notebook 01_prepare_data first")
    manifest = pd.read_csv(man_p, keep_default_na=False)
    with np.load(img_p) as z:
        images = z["images"]
    if len(manifest) != len(images):
        raise ValueError(f"{man_p} has {len(manifest)} rows, {img_p} {len(images)} images")
    return manifest, images


def split_counts(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images and groups per modality and split (the table behind the counts figure)."""
    g = manifest.groupby(["modality", "split"])
    return g.agg(images=("image_id", "size"), groups=("group", "nunique")).reset_index()


def make_eval_pairs(manifest, images, n_val: int, n_test: int, seed: int, config) -> dict:
    """Materialize and save the validation and test pairs; returns ``{split: pairs}``."""
    out = {}
    for split, n in (("val", n_val), ("test", n_test)):
        table, a, b = pairs.make_pairs(
            manifest, images, split=split, n_pairs=n, seed=seed, config=config
        )
        pairs.save_pairs(table, a, b, folder=paths.PROCESSED, split=split)
        out[split] = table
    return out


def pair_summary(tables: dict) -> pd.DataFrame:
    """Counts of pairs per split, label, negative kind and family."""
    rows = []
    for split, t in tables.items():
        kind = np.where(t["label"] == 1, "positive", t["negative_kind"])
        rows.append(t.assign(kind=kind).groupby("kind").size().rename(split))
    return pd.concat(rows, axis=1).fillna(0).astype(int).reset_index()


def alteration_examples(image: np.ndarray, seed: int = 0):
    """One example of every alteration family applied to ``image``.

    Returns:
        ``(images, table)``: the original first, then one image per family, and a table of
        family and recorded parameters.
    """
    from bfutils import augment

    rng = np.random.default_rng(seed)
    alts = [augment.sample(f, rng) for f in augment.FAMILIES]
    imgs = [image] + [augment.apply(image, a) for a in alts]
    table = pd.DataFrame(
        {"family": ["original"] + [a.family for a in alts],
         "alteration": [""] + [a.to_json() for a in alts]}
    )  # fmt: skip
    return imgs, table


def hard_negative_examples(table: pd.DataFrame, n: int = 6, seed: int = 0) -> pd.DataFrame:
    """Pick hard negatives of varied detail, each with a positive of the same source image.

    Returns:
        Rows of ``table`` (positives and hard negatives interleaved) to show side by side.
    """
    hard = table[(table["label"] == 0) & (table["negative_kind"] == "hard")]
    pos = table[table["label"] == 1]
    picked = (
        hard.groupby("hard_detail", group_keys=False).head(1).sample(frac=1.0, random_state=seed)
    )
    rows = []
    for r in picked.head(n).itertuples():
        same = pos[pos["image_a"] == r.image_a]
        if len(same):
            rows.append(same.index[0])
        rows.append(r.Index)
    return table.loc[rows]
