"""A planted figure benchmark: a folder of panels with known reuse hidden among look-alikes.

``build(out_dir)`` cuts about 1,000 figure panels from real images (``../shared/data``: DSB 2018
nuclei, BCCD smears) and the embedded images (MNI slices, scikit-image tiles). In about 200 of
them a panel reuses another one, by one of the :data:`bfutils.figure_alter.FAMILIES`. Every
panel, planted or not, goes through the same presentation (40-400 px, annotations, shrink and
blow-up, PNG or JPEG at 50-90, sometimes twice), so nothing but the reuse tells them apart.

Distractors are chosen to be hard: for each planted source, a *sibling* from the same group of
:func:`bfutils.data.load_records` is added when one exists (a neighbouring tile of one DSB
acquisition, a consecutive BCCD capture, a neighbouring MRI slice or the same slice in another
tissue). Each source image is used at most once, and pixel twins (:func:`drop_twins`: the
mirror-symmetric sagittal slices of the MNI template) are dropped from the pool, so the planted
pairs are the only reuse the labels know of. Not caught: BCCD captures of overlapping fields of
one smear (different pictures that share cells); a finder that links them is right, and the
benchmark counts it as a false pair.

Written to ``out_dir`` (never inside the repository, as the data is not ours to copy):

- ``panels/``: the panel files, named ``p0000.png`` ... in a shuffled order;
- ``truth.csv``: one row per planted pair: ``query``, ``source``, ``family``, ``params`` (JSON
  of every draw), ``area_fraction`` (share of the source that the query shows),
  ``overlap_fraction`` (share of the query that comes from the source), sizes, ``size_band``
  (query long side), and the reused region as boxes in the source (``src_x0 .. src_y1``) and in
  the query (``qry_x0 .. qry_y1``), pixel edges, x1/y1 exclusive;
- ``panels.csv``: every panel with ``role`` (query/source/distractor), ``distractor_kind``
  (``sibling`` or ``random``), ``group`` (its sibling cluster), origin and presentation;
- ``benchmark.json``: the seed, the counts and any notes (e.g. real data missing).

The same seed and sources give the same bytes on the same library versions.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from bfutils import figure_alter as fa
from bfutils import paths
from bfutils.data import load_records, record_pixels
from bfutils.progress import bar

SOURCES: tuple[str, ...] = ("embedded", "dsb2018", "bccd")
ALL_SOURCES: tuple[str, ...] = (*SOURCES, "graphics")  # graphics: drawn blots, gels, dot plots
SIZE_BANDS: tuple[str, ...] = ("<64", "64-128", "128-256", ">=256")
_WEIGHTS = {"partial": 2}  # partial reuse is the hard case the finder issue measures separately
_P_ANNOTATE, _P_RESCALE, _P_JPEG, _P_TWICE, _P_STYLE, _P_CROP = 0.5, 0.25, 0.6, 0.3, 0.15, 0.4


def size_band(long_side: int) -> str:
    """Panel-size band of a panel with the given long side in pixels."""
    edges = (64, 128, 256)
    return SIZE_BANDS[sum(long_side >= e for e in edges)]


def load_pool(
    sources: Sequence[str] = SOURCES, options: dict | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Records of the source images, and notes on sources that were left out.

    ``options`` maps a source name to keyword options of :func:`bfutils.data.load_records`
    (e.g. ``{"graphics": {"first_group": 16}}``).

    ``dsb2018`` and ``bccd`` are read from :func:`bfutils.paths.shared`; when that folder is
    missing the source is skipped (no download) and a note says so.
    """
    unknown = [name for name in sources if name not in ALL_SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; choose from {list(ALL_SOURCES)}")
    frames, notes = [], []
    for name in sources:
        extra = (options or {}).get(name, {})
        if name in ("embedded", "graphics"):
            frames.append(load_records(name, **extra))
            continue
        root = paths.shared(name)
        if not root.is_dir():
            notes.append(f"{name}: {root} is missing, benchmark built without it")
            continue
        check = {"validate": False} if name == "bccd" else {}
        frames.append(load_records(name, root=root, on_error="skip", **check, **extra))
    if not frames:
        raise ValueError(f"no usable source among {list(sources)}")
    pool = pd.concat(frames, ignore_index=True)
    twin = drop_twins(pool)
    if twin.any():
        notes.append(
            f"{int(twin.sum())} source images dropped as pixel twins of another "
            f"(e.g. {pool.image_id[twin].iloc[0]}: the MNI template is left-right symmetric)"
        )
    return pool[~twin].reset_index(drop=True), notes


def content_key(image: np.ndarray) -> bytes:
    """A coarse fingerprint of an image's content: 16 x 16 grey, contrast-stretched, 16 levels.

    Equal for exact duplicates and for the two sagittal slices of the MNI template that lie
    symmetrically about the midline (the template is left-right symmetric, so they are the same
    picture under two names); distinct for neighbouring slices and tiles.
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    thumb = cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
    thumb = (thumb - thumb.min()) / (np.ptp(thumb) + 1e-6) * 255
    return (thumb // 16).astype(np.uint8).tobytes()


def drop_twins(pool: pd.DataFrame) -> np.ndarray:
    """Mask of the records whose content (:func:`content_key`) an earlier record already has.

    "Each source image is used at most once" must hold for content, not only for names: a
    distractor that is a pixel twin of a planted source would be a second, unlabelled copy.
    """
    seen: set[bytes] = set()
    twin = np.zeros(len(pool), bool)
    for n, rec in enumerate(pool.itertuples()):
        key = content_key(record_pixels(rec))
        twin[n] = key in seen
        seen.add(key)
    return twin


def _pick_bases(pool, n_planted, n_distractors, rng) -> tuple[list, list, list]:
    """Indices of planted bases, their siblings and random distractors (all distinct)."""
    sizes = pool.groupby("group")["group"].transform("size")
    used: set[int] = set()
    planted = []
    by_source = [pool.index[(pool.source == s) & (sizes >= 2)] for s in pool.source.unique()]
    quotas = np.diff(np.linspace(0, n_planted, len(by_source) + 1).round().astype(int))
    spare = 0
    for idx, quota in sorted(zip(by_source, quotas, strict=True), key=lambda t: len(t[0])):
        take = min(len(idx), quota + spare)  # a small source passes its share on
        spare = quota + spare - take
        planted += [int(i) for i in rng.choice(idx, size=take, replace=False)]
    if len(planted) < n_planted:
        rest = pool.index.difference(planted)
        planted += [int(i) for i in rng.choice(rest, size=n_planted - len(planted), replace=False)]
    used.update(planted)
    siblings = []
    for i in planted:
        mates = [int(j) for j in pool.index[pool.group == pool.at[i, "group"]] if j not in used]
        if mates and len(siblings) < n_distractors:
            j = mates[int(rng.integers(len(mates)))]
            siblings.append((j, i))
            used.add(j)
    rest = pool.index.difference(list(used))
    n_random = n_distractors - len(siblings)
    return planted, siblings, [int(i) for i in rng.choice(rest, size=n_random, replace=False)]


def _presentation(rng: np.random.Generator, width: int, height: int) -> dict:
    """Draw what the figure does to a ``width x height`` panel."""
    jpeg = []
    if rng.random() < _P_JPEG:
        jpeg = [int(rng.integers(50, 91)) for _ in range(2 if rng.random() < _P_TWICE else 1)]
    return {
        "annotations": fa.sample_annotations(rng, width, height)
        if rng.random() < _P_ANNOTATE
        else [],
        "rescale": int(rng.integers(32, 129)) if rng.random() < _P_RESCALE else None,
        "jpeg": jpeg,
    }


def _render(content: np.ndarray, size, steps, rng) -> tuple[bytes, str, tuple[int, int], dict]:
    """Resize, edit and present one panel; returns its file bytes, extension, size and recipe."""
    image = fa.apply_edit(fa.resize(content, size), steps)
    h, w = image.shape[:2]
    show = _presentation(rng, w, h)
    image = fa.annotate(image, show["annotations"]) if show["annotations"] else image
    image = fa.rescale_through(image, show["rescale"]) if show["rescale"] else image
    for q in show["jpeg"][:-1]:
        image = fa.jpeg_roundtrip(image, q)
    gray = bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())
    pil = Image.fromarray(image[..., 0] if gray else image)
    buf = io.BytesIO()
    if show["jpeg"]:
        pil.save(buf, format="JPEG", quality=show["jpeg"][-1])
    else:
        pil.save(buf, format="PNG")
    return buf.getvalue(), "jpg" if show["jpeg"] else "png", (w, h), {"size": [w, h], **show}


def _style(rng: np.random.Generator) -> list[dict]:
    """Colour styling that sources and distractors get as often as each other."""
    return fa.sample_edit("colour", rng) if rng.random() < _P_STYLE else []


def _planted(base: np.ndarray, family: str, rng: np.random.Generator) -> tuple[dict, dict, dict]:
    """Source panel, query panel and the truth fields of one planted pair."""
    bh, bw = base.shape[:2]
    full = [0, 0, bw, bh]
    src_region, region = full, full
    if family == "overlap":
        src_region, region = fa.sample_overlap(rng, bw, bh)
    elif family in fa.AREA or (family == "compose" and rng.random() < 0.5):
        area = rng.uniform(*fa.AREA.get(family, fa.AREA["crop"]))
        region = fa.sample_box(rng, bw, bh, area=area)
    shared = fa.intersect(src_region, region)
    src = _crop(base, src_region)
    src_size = fa.panel_size(rng, src.shape[1], src.shape[0])
    src_panel = _render(src, src_size, _style(rng), rng)
    qry = _crop(base, region)
    qry_size = fa.panel_size(rng, qry.shape[1], qry.shape[0])
    steps = fa.sample_edit(family, rng)
    qry_panel = _render(qry, qry_size, steps, rng)
    rel = [shared[0] - src_region[0], shared[1] - src_region[1]]
    src_box = fa.scale_box(
        [rel[0], rel[1], rel[0] + shared[2] - shared[0], rel[1] + shared[3] - shared[1]],
        src=(src.shape[1], src.shape[0]),
        dst=src_size,
    )
    if family == "overlap":  # no edit moves pixels, so the shared part maps straight across
        rq = [shared[0] - region[0], shared[1] - region[1]]
        qbox = [rq[0], rq[1], rq[0] + shared[2] - shared[0], rq[1] + shared[3] - shared[1]]
        qry_box = fa.scale_box(qbox, src=(qry.shape[1], qry.shape[0]), dst=qry_size)
    else:
        qry_box = [0, 0, *qry_panel[2]]
    truth = {
        "family": family,
        "area_fraction": round(fa.box_area(shared) / fa.box_area(src_region), 4),
        "overlap_fraction": round(fa.box_area(shared) / fa.box_area(region), 4),
        "edit": steps,
        "src_region": src_region,
        "qry_region": region,
        **dict(zip(("src_x0", "src_y0", "src_x1", "src_y1"), src_box, strict=True)),
        **dict(zip(("qry_x0", "qry_y0", "qry_x1", "qry_y1"), qry_box, strict=True)),
    }
    return src_panel, qry_panel, truth


def _crop(image: np.ndarray, box: list[int]) -> np.ndarray:
    return image[box[1] : box[3], box[0] : box[2]]


def _distractor(base: np.ndarray, rng: np.random.Generator) -> tuple:
    """A panel cut from an unrelated image: sometimes cropped, sometimes restyled."""
    if rng.random() < _P_CROP:
        box = fa.sample_box(rng, base.shape[1], base.shape[0], area=rng.uniform(0.5, 0.95))
        base = _crop(base, box)
    size = fa.panel_size(rng, base.shape[1], base.shape[0])
    return _render(base, size, _style(rng), rng)


def _families(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` family names, as even as the weights allow, in random order."""
    cycle = [f for f in fa.FAMILIES for _ in range(_WEIGHTS.get(f, 1))]
    names = [cycle[i % len(cycle)] for i in range(n)]
    return [names[i] for i in rng.permutation(n)]


def build(
    out_dir: str | Path,
    n_panels: int = 1000,
    n_planted: int = 200,
    seed: int = 0,
    sources: Sequence[str] = SOURCES,
    progress: bool = True,
) -> dict:
    """Build the planted benchmark folder (see the module docstring for what it holds).

    Args:
        out_dir: Folder to write; created, and refused if it already holds ``panels/``.
        n_panels: Panels in total (planted queries, their sources and distractors).
        n_planted: Planted (query, source) pairs; at most half of ``n_panels``.
        seed: The only source of randomness.
        sources: Image sources; ``dsb2018`` and ``bccd`` are skipped with a note when
            ``../shared/data`` lacks them. With too few images, ``n_panels`` shrinks (noted).
        progress: Show a progress bar.

    Returns:
        The summary also written to ``benchmark.json`` (counts per family, size band, role,
        and ``notes``).
    """
    if not 0 < 2 * n_planted <= n_panels:
        raise ValueError(f"need 0 < 2 * n_planted <= n_panels, got {n_planted}, {n_panels}")
    out = Path(out_dir)
    if (out / "panels").exists():
        raise FileExistsError(f"{out / 'panels'} exists; build into a new folder")
    pool, notes = load_pool(sources)
    if len(pool) + n_planted < n_panels:
        notes.append(
            f"only {len(pool)} source images: n_panels {n_panels} -> {len(pool) + n_planted}"
        )
        n_panels = len(pool) + n_planted
    rng = np.random.default_rng(seed)
    planted, siblings, randoms = _pick_bases(pool, n_planted, n_panels - 2 * n_planted, rng)
    families = _families(n_planted, rng)
    seeds = rng.integers(2**63, size=n_panels - n_planted)  # one stream per base image
    names = rng.permutation(n_panels)
    panels, truth = [], []
    jobs = [("planted", i, f) for i, f in zip(planted, families, strict=True)]
    jobs += [("sibling", j, i) for j, i in siblings] + [("random", i, None) for i in randoms]
    for k, (kind, i, extra) in enumerate(bar(jobs, desc="panels", disable=not progress)):
        rec, job_rng = pool.loc[i], np.random.default_rng(seeds[k])
        base = record_pixels(rec)
        if kind == "planted":
            src, qry, fields = _planted(base, extra, job_rng)
            made = [("source", src), ("query", qry)]
        else:
            made = [("distractor", _distractor(base, job_rng))]
        for role, (data, ext, size, recipe) in made:
            name = f"p{names[len(panels)]:04d}.{ext}"
            (out / "panels").mkdir(parents=True, exist_ok=True)
            (out / "panels" / name).write_bytes(data)
            panels.append(
                {
                    "file": name,
                    "role": role,
                    "distractor_kind": "" if kind == "planted" else kind,
                    "image_id": rec.image_id,
                    "group": rec.group,
                    "source": rec.source,
                    "modality": rec.modality,
                    "width": size[0],
                    "height": size[1],
                    "size_band": size_band(max(size)),
                    "format": ext,
                    "sibling_of": "" if kind != "sibling" else pool.at[extra, "image_id"],
                    "recipe": json.dumps(recipe),
                }
            )
        if kind == "planted":
            truth.append(_truth_row(panels[-1], panels[-2], rec, fields))
    return _write(out, pd.DataFrame(panels), pd.DataFrame(truth), seed=seed, notes=notes)


def _truth_row(query: dict, source: dict, rec, fields: dict) -> dict:
    params = {k: fields.pop(k) for k in ("edit", "src_region", "qry_region")}
    params["query_recipe"] = json.loads(query["recipe"])
    return {
        "query": query["file"],
        "source": source["file"],
        "family": fields.pop("family"),
        "params": json.dumps(params),
        "query_w": query["width"],
        "query_h": query["height"],
        "source_w": source["width"],
        "source_h": source["height"],
        "size_band": query["size_band"],
        "image_id": rec.image_id,
        "group": rec.group,
        **fields,
    }


def _write(out: Path, panels: pd.DataFrame, truth: pd.DataFrame, *, seed: int, notes) -> dict:
    panels = panels.sort_values("file").reset_index(drop=True)
    truth = truth.sort_values("query").reset_index(drop=True)
    panels.to_csv(out / "panels.csv", index=False)
    truth.to_csv(out / "truth.csv", index=False)
    summary = {
        "seed": seed,
        "n_panels": len(panels),
        "n_planted": len(truth),
        "roles": panels["role"].value_counts().to_dict(),
        "distractor_kinds": panels["distractor_kind"].replace("", "-").value_counts().to_dict(),
        "sources": panels["source"].value_counts().to_dict(),
        "families": truth["family"].value_counts().to_dict(),
        "size_bands": truth["size_band"].value_counts().to_dict(),
        "area_bands": area_band(truth["area_fraction"]).value_counts().to_dict(),
        "formats": panels["format"].value_counts().to_dict(),
        "notes": list(notes),
    }
    (out / "benchmark.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def area_band(area_fraction: pd.Series) -> pd.Series:
    """``"30-60%"``, ``"60-100%"`` for queries that show part of their source, else ``"full"``."""
    a = area_fraction.astype(float)
    return pd.Series(
        np.where(a >= 0.999, "full", np.where(a < 0.6, "30-60%", "60-100%")), index=a.index
    )


def training_pairs(
    images: np.ndarray, k: int, rng: np.random.Generator, families: Sequence[str] = fa.FAMILIES
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``k`` figure-realistic (source, query) panel pairs of every training image.

    Each pair is made exactly as a planted pair of the benchmark (:func:`_planted`: a reuse
    family drawn uniformly from ``families``, panels of 40-400 px, annotations, JPEG), decoded,
    and padded back to the images' square size, as a scan pads a panel before the encoder.
    Issue 9, item 1: the pair model trains on what reuse in a figure looks like.

    Args:
        images: (N, S, S, 3) uint8 training images.
        k: pairs per image.
        rng: the only source of randomness.
        families: reuse families to draw from.

    Returns:
        ``(sources, queries)``: ``k`` arrays of shape (N, S, S, 3) each; ``sources[j][i]`` and
        ``queries[j][i]`` are the two panels of pair ``j`` of image ``i``.
    """
    from bfutils.data.pixels import fit_square

    n, side = len(images), images.shape[1]
    src = [np.empty_like(images) for _ in range(k)]
    qry = [np.empty_like(images) for _ in range(k)]
    for j in bar(range(k), desc="figure pairs"):
        for i in range(n):
            family = families[int(rng.integers(len(families)))]
            (s, *_), (q, *_), _ = _planted(images[i], family, rng)
            src[j][i] = fit_square(_decode(s), size=side, fit="pad")
            qry[j][i] = fit_square(_decode(q), size=side, fit="pad")
    return src, qry


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))
