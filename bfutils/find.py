"""Find reused panels in a set of figures: shortlist, verify, locate, score, report.

    python -m bfutils.find PANELS [--reference LIBRARY] [--detector FILE] [--out DIR]

Two stages, as the ISC 2021 matching-track winners did it (global retrieval, then local
verification), with all per-image work done once and cached (:mod:`bfutils.descriptors`):

1. **embed**: every image once, batched: an SSCD copy descriptor (:mod:`bfutils.copydesc`),
   perceptual hashes (:mod:`bfutils.phash`), grey thumbnails (:mod:`bfutils.thumbs`),
   SIFT and XFeat keypoints (:mod:`bfutils.localfeat`) and, if the detector has encoder views
   (the shipped default has none), encoder descriptors of the image and of its sub-regions.
   Cached by content hash, so re-scanning a grown library only embeds the new files.
2. **index**: a faiss exact inner-product index (``IndexFlatIP``) of the copy descriptors
   (:func:`copy_shortlist`), an exact Hamming index of the perceptual hashes in 8 orientations
   (:func:`phash_shortlist`), an exact inner-product index of the grey thumbnails in 8
   orientations (:func:`thumb_shortlist`), and for a detector with encoder views one of the
   indexed views
   and regions of every image (:func:`shortlist`); each image takes its ``k`` nearest images.
   Exact search is fine to about 1M vectors (~10k-70k images); beyond, switch to
   ``IndexHNSWFlat`` (no training, ~2x memory) or ``IndexIVFPQ`` (trained, compressed: 512-d
   to 64 bytes) and keep ``k`` larger. A further shortlist votes with the keypoints
   themselves (:mod:`bfutils.keyvote`: every RootSIFT descriptor, direct and mirrored, looks
   up its nearest neighbours in all other images;
   keypoints found in many images, the figure's shared annotations, are set aside), which
   finds the partial, rotated, mirrored and annotated copies the descriptors rank low; the
   union of all of them is verified.
3. **verify**: the shortlist only: one-to-one keypoint matches, a plausible affine RANSAC fit
   (mirror tried), a-contrario evidence, the matched box in each image
   (:func:`bfutils.verify.verify`); and, for a detector with XFeat keypoints (the shipped one),
   a second fit on those learned keypoints, which repeat on the blurred, shrunk and smooth
   panels where SIFT finds nothing (:func:`bfutils.localfeat.verify`).
4. **score**: the detector's fused model over symmetric features; pairs at or above its
   threshold are flagged. A blank panel carries no evidence: its pairs score 0 with a note.

Modes: within one set (every panel against every other), panels against a reference
library (``reference``; pairs within the panels too unless ``within=False``), and repeated
regions inside one image (``self_check``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from bfutils import (
    copydesc,
    descriptors,
    detector,
    keyvote,
    localfeat,
    panels,
    progress,
    template,
    verify,
)

SELF_EVIDENCE = 4.0
"""Repeated regions inside one image are flagged when chance explains them at most 1 in 10^4."""
COLUMNS = ["a", "b", "score", "flagged", "pair_score", "inliers", "matches", "evidence",
           "transform", "box_a", "box_b", "cos_global", "cos_region", "note"]  # fmt: skip


def _index(keys, recs, det, regions: bool) -> tuple[faiss.Index, np.ndarray]:
    """Exact inner-product index of the indexed views and regions of ``keys``, and the owner
    (position in ``keys``) of every row. Added in blocks of images, so the float32 rows are
    never held twice (about 0.7 GB at 10,000 images)."""
    views = det.preprocess["views"]
    keep = [i for i, v in enumerate(views) if v in detector.INDEX_VIEWS]
    index, owners = None, []
    for start in range(0, len(keys), 512):
        rows = []
        for n, key in enumerate(keys[start : start + 512], start):
            r = recs[key]
            extra = [r["regional"]] if regions and len(r["regional"]) else []
            parts = [r["global"][keep], *extra]
            block = detector.centred(np.concatenate(parts), det.descriptor_mean)
            rows.append(block.astype(np.float32))
            owners.append(np.full(len(block), n))
        rows = np.concatenate(rows)
        if index is None:
            index = faiss.IndexFlatIP(rows.shape[1])
        index.add(rows)
    return index, np.concatenate(owners)


def shortlist(
    query_keys, index_keys, recs, det, k: int = 10, same_set: bool = True, show_progress=True
) -> dict[tuple[str, str], float]:
    """Top-``k`` candidate partners of every query image, by best descriptor similarity.

    Args:
        query_keys: panel keys used as queries (their records in ``recs``).
        index_keys: panel keys in the index.
        recs: descriptors by panel key.
        det: the detector.
        k: candidates kept per query image.
        same_set: queries and index are the same images (self matches are dropped).
        show_progress: show the ``index`` bar.

    Returns:
        ``{(key_a, key_b): similarity}`` over unordered pairs (keys sorted).
    """
    index, owners = _index(index_keys, recs, det, regions=True)
    per_image = len(owners) // max(len(index_keys), 1)
    n_search = min(len(owners), (k + 2) * per_image)
    found: dict[tuple[str, str], float] = {}
    chunk = 256
    bar = progress.bar(total=len(query_keys), desc="index", unit="img", disable=not show_progress)
    for start in range(0, len(query_keys), chunk):
        keys = query_keys[start : start + chunk]
        q = np.stack([detector.centred(recs[key]["global"], det.descriptor_mean) for key in keys])
        n_views = q.shape[1]
        sims, ids = index.search(q.reshape(-1, q.shape[-1]).astype(np.float32), n_search)
        for row, key in enumerate(keys):
            s = sims[row * n_views : (row + 1) * n_views].ravel()
            o = owners[ids[row * n_views : (row + 1) * n_views].ravel().clip(0)]
            best: dict[int, float] = {}
            for owner, sim in zip(o, s, strict=True):
                if sim > best.get(owner, -2.0):
                    best[owner] = float(sim)
            ranked = sorted(best.items(), key=lambda t: -t[1])
            taken = 0
            for owner, sim in ranked:
                other = index_keys[owner]
                if same_set and other == key:
                    continue
                pair = (key, other) if key < other else (other, key)
                found[pair] = max(found.get(pair, -2.0), sim)
                taken += 1
                if taken == k:
                    break
        bar.update(len(keys))
    bar.close()
    return found


def without(rec: dict, drop: np.ndarray) -> dict:
    """A panel's record with some keypoints removed (the common ones of a scan)."""
    if not drop.any():
        return rec
    return rec | {"points": rec["points"][~drop], "desc": rec["desc"][~drop]}


def copy_shortlist(
    query_keys, index_keys, recs, det, k: int = 10, same_set: bool = True
) -> dict[tuple[str, str], float]:
    """Top-``k`` partners of every query image by copy-descriptor cosine (exact search).

    Images without a copy descriptor (a detector without one) give no candidates.

    Returns:
        ``{(key_a, key_b): cosine}`` over unordered pairs (keys sorted).
    """
    index_keys = [key for key in index_keys if "copy" in recs[key]]
    query_keys = [key for key in query_keys if "copy" in recs[key]]
    if not index_keys or not query_keys:
        return {}

    def vectors(keys):
        return detector.centred(np.stack([recs[key]["copy"] for key in keys]), det.copy_mean)

    index = faiss.IndexFlatIP(512)
    index.add(vectors(index_keys))
    found: dict[tuple[str, str], float] = {}
    for start in range(0, len(query_keys), 1024):
        keys = query_keys[start : start + 1024]
        sims, ids = index.search(vectors(keys), min(len(index_keys), k + 1))
        for key, row_s, row_i in zip(keys, sims, ids, strict=True):
            taken = 0
            for sim, i in zip(row_s, row_i, strict=True):
                other = index_keys[i]
                if i < 0 or taken == k or (same_set and other == key):
                    continue
                pair = (key, other) if key < other else (other, key)
                found[pair] = max(found.get(pair, -2.0), float(sim))
                taken += 1
    return found


PHASH_K = 2
"""Candidates per image from the perceptual hashes. A hash matches almost exactly or not at
all: on the planted figure benchmark (seed 0) its top 1, 2 and 10 added the same 5 partners
(blurred, noised, re-contrasted whole panels) to the copy-descriptor and keypoint shortlists
(0.92 -> 0.945), at +640, +1,400 and +7,300 pairs to verify."""


def phash_shortlist(
    query_keys, index_keys, recs, k: int = 10, same_set: bool = True
) -> dict[tuple[str, str], float]:
    """Top-``k`` partners of every query image by perceptual-hash similarity (exact Hamming
    search, faiss ``IndexBinaryFlat``): each of the query's 8 orientations against the
    others' upright hashes, so a flipped or rotated copy is found too.

    Images without hashes (a detector without them) give no candidates.

    Returns:
        ``{(key_a, key_b): 1 - distance / 64}`` over unordered pairs (keys sorted).
    """
    from bfutils import phash

    index_keys = [key for key in index_keys if "phash" in recs[key]]
    query_keys = [key for key in query_keys if "phash" in recs[key]]
    if not index_keys or not query_keys:
        return {}
    index = faiss.IndexBinaryFlat(phash.BITS)
    index.add(np.stack([recs[key]["phash"][0] for key in index_keys]))
    n_search = min(len(index_keys), k + 1)
    found: dict[tuple[str, str], float] = {}
    for start in range(0, len(query_keys), 1024):
        keys = query_keys[start : start + 1024]
        q = np.concatenate([recs[key]["phash"] for key in keys])  # 8 rows per query
        dist, ids = index.search(q, n_search)
        dist = dist.reshape(len(keys), -1)
        ids = ids.reshape(len(keys), -1)
        for key, row_d, row_i in zip(keys, dist, ids, strict=True):
            best: dict[int, int] = {}
            for d, i in zip(row_d, row_i, strict=True):
                if i >= 0 and not (same_set and index_keys[i] == key):
                    best[i] = min(best.get(i, phash.BITS), int(d))
            for i, d in sorted(best.items(), key=lambda t: (t[1], t[0]))[:k]:
                other = index_keys[i]
                pair = (key, other) if key < other else (other, key)
                found[pair] = max(found.get(pair, -2.0), 1.0 - d / phash.BITS)
    return found


THUMB_K = 2
"""Candidates per image from the grey thumbnails (:mod:`bfutils.thumbs`): whole-panel copies
whose thumbnails correlate best (re-contrasted, recoloured, blurred or turned sparse panels that
the copy descriptor and the keypoints miss)."""


def thumb_shortlist(
    query_keys, index_keys, recs, k: int = THUMB_K, same_set: bool = True
) -> dict[tuple[str, str], float]:
    """Top-``k`` partners of every query image by thumbnail correlation (exact inner-product
    search, faiss ``IndexFlatIP``): each of the query's 8 orientations against the others'
    upright thumbnails, so a flipped or rotated copy is found too.

    Images without thumbnails (a detector without them) give no candidates.

    Returns:
        ``{(key_a, key_b): correlation}`` over unordered pairs (keys sorted).
    """
    from bfutils import thumbs

    index_keys = [key for key in index_keys if "thumb" in recs[key]]
    query_keys = [key for key in query_keys if "thumb" in recs[key]]
    if not index_keys or not query_keys:
        return {}
    index = faiss.IndexFlatIP(thumbs.SIDE * thumbs.SIDE)
    for start in range(0, len(index_keys), 1024):
        index.add(np.stack([thumbs.vectors(recs[key]["thumb"])[0]
                            for key in index_keys[start : start + 1024]]))  # fmt: skip
    n_search = min(len(index_keys), k + 1)
    found: dict[tuple[str, str], float] = {}
    for start in range(0, len(query_keys), 256):
        keys = query_keys[start : start + 256]
        q = np.concatenate([thumbs.vectors(recs[key]["thumb"]) for key in keys])  # 8 rows each
        sims, ids = index.search(q, n_search)
        sims = sims.reshape(len(keys), -1)
        ids = ids.reshape(len(keys), -1)
        for key, row_s, row_i in zip(keys, sims, ids, strict=True):
            best: dict[int, float] = {}
            for sim, i in zip(row_s, row_i, strict=True):
                if i >= 0 and not (same_set and index_keys[i] == key):
                    best[i] = max(best.get(i, -2.0), float(sim))
            for i, sim in sorted(best.items(), key=lambda t: (-t[1], t[0]))[:k]:
                other = index_keys[i]
                pair = (key, other) if key < other else (other, key)
                found[pair] = max(found.get(pair, -2.0), sim)
    return found


def shortlist_all(
    queries, refs, recs, det, k: int = 10, within: bool = True, show_progress: bool = True
) -> tuple[dict[tuple[str, str], float], dict]:
    """Candidate pairs of a scan: the union of the descriptor and the keypoint-vote shortlists.

    The copy descriptor finds copies that still look alike as a whole (recoloured, blurred,
    rescaled); the keypoint votes (:mod:`bfutils.keyvote`) find those that share local
    structure (partial crops, rotated, mirrored, annotated). On the planted figure benchmark
    (seed 0, 1,000 panels, twins dropped) the SSCD top-10 held 80.5 % of the planted partners,
    the keypoint top-10 87 %, their union 92 %; the ImageNet Lite0 top-10 (global and
    regional, for detectors with encoder views) held 53.5 % and added none to that union.
    The perceptual hashes' top :data:`PHASH_K` (:func:`phash_shortlist`) add the whole-panel
    copies that were blurred, noised or re-contrasted: union 94.5 %.

    Args:
        queries: panel keys scanned.
        refs: reference library keys (may be empty).
        recs: descriptors by panel key.
        det: the detector (its ``descriptor_mean`` already set for this scan).
        k: candidates per image and shortlist.
        within: pair the queries with each other too.
        show_progress: progress bars.

    Returns:
        ``(candidates, records)``: ``{(key_a, key_b): descriptor similarity}`` (keys sorted;
        the best of the copy and encoder cosines; -2 when only hashes or keypoints found the
        pair), and the records with the scan's common keypoints (annotation glyphs,
        :func:`bfutils.keyvote.common_keypoints`) removed, which is what verification should
        see.
    """
    found: dict = {}
    if within and len(queries) > 1:
        if det.uses_encoder:
            found |= shortlist(queries, queries, recs, det, k=k, show_progress=show_progress)
        for pair, s in copy_shortlist(queries, queries, recs, det, k=k).items():
            found[pair] = max(found.get(pair, -2.0), s)
        for pair in phash_shortlist(queries, queries, recs, k=min(k, PHASH_K)):
            found.setdefault(pair, -2.0)
        for pair in thumb_shortlist(queries, queries, recs, k=min(k, THUMB_K)):
            found.setdefault(pair, -2.0)
    if refs and queries:
        for q, i in ((queries, refs), (refs, queries)):  # a panel cut from either side
            if det.uses_encoder:
                for pair, s in shortlist(q, i, recs, det, k=k, same_set=False,
                                         show_progress=show_progress).items():  # fmt: skip
                    found[pair] = max(found.get(pair, -2.0), s)
            for pair, s in copy_shortlist(q, i, recs, det, k=k, same_set=False).items():
                found[pair] = max(found.get(pair, -2.0), s)
            for pair in phash_shortlist(q, i, recs, k=min(k, PHASH_K), same_set=False):
                found.setdefault(pair, -2.0)
            for pair in thumb_shortlist(q, i, recs, k=min(k, THUMB_K), same_set=False):
                found.setdefault(pair, -2.0)
    side = set(queries)
    votes, common = keyvote.shortlist(list(queries) + list(refs), recs, k=k,
                                      show_progress=show_progress)  # fmt: skip
    for pair in votes:
        n_query = (pair[0] in side) + (pair[1] in side)
        if n_query == 1 or (n_query == 2 and within):  # never reference against reference
            found.setdefault(pair, -2.0)
    return found, {key: without(rec, common[key]) if key in common else rec
                   for key, rec in recs.items()}  # fmt: skip


SAME_COPY_COSINE = 0.98
"""Cosine of two (unit, uncentred) copy descriptors above which two images are near-identical:
their pairs with a third image are then not set against each other
(:func:`bfutils.detector.rival_margins`), so a panel reused twice does not hide its copies.
0.95 until 2026-12-05: drawn dot plots of one experiment (shared axes, gate and labels, their
own events) reach 0.96, so they were not each other's rivals and a folder of them was flagged
pair by pair; on the seed-0 planted draw with graphics no two siblings reach 0.98 (the highest,
two MNI neighbour slices, 0.975) while 3 planted copies do."""

TIE_BREAK = 1e-3
"""Weight of the best cosine added to the fused probability. The fused model may give the
descriptor cosine no weight (on the calibration pairs it adds nothing once keypoint evidence
is known), which leaves every pair without keypoint evidence at one score; this orders them by
similarity without moving any score by more than 0.001."""

MIN_BACKGROUND = 100
"""Scans of at least this many images centre descriptors on their own mean (see below)."""


def _with_background(det: detector.Detector, recs: dict) -> detector.Detector:
    """The detector with descriptors centred on the scanned images' own mean.

    Cosine similarity of ImageNet features is high between any two images of one kind (two
    blood-smear crops, two nuclei tiles); centring on the mean of the set being scanned, as
    copy-detection score normalisation against a background set does, measures similarity
    relative to what is typical there. The calibration set was centred on its own mean the
    same way. Small scans keep the detector's stored mean (a few images give a poor mean).
    """
    if len(recs) < MIN_BACKGROUND:
        return det
    mean = det.descriptor_mean
    if det.uses_encoder:
        mean = np.mean([r["global"][0].astype(np.float32) for r in recs.values()], axis=0)
    copies = [r["copy"].astype(np.float32) for r in recs.values() if "copy" in r]
    copy_mean = np.mean(copies, axis=0) if copies else det.copy_mean
    return dataclasses.replace(det, descriptor_mean=mean, copy_mean=copy_mean)


def verify_pairs(pairs, recs, shas, det, show_progress=True) -> pd.DataFrame:
    """Keypoint evidence and fused features of candidate pairs (no score yet).

    Args:
        pairs: iterable of ``(key_a, key_b)``.
        recs: descriptors by panel key.
        shas: content hash by panel key.
        det: the detector (keypoint settings, descriptor mean).
        show_progress: show the ``verify`` bar.

    Returns:
        One row per pair: ``a``, ``b``, the evidence of :func:`bfutils.verify.verify`, the
        features of :func:`bfutils.detector.pair_features`, ``pair_score``, ``blank`` and
        ``note``.
    """
    pairs = list(pairs)
    tm = template_scores(pairs, recs, show_progress)
    rows = []
    for n, (a, b) in enumerate(
        progress.bar(pairs, desc="verify", unit="pair", disable=not show_progress)
    ):
        ra, rb = recs[a], recs[b]
        blank = [key for key, r in ((a, ra), (b, rb)) if bool(r["blank"])]
        if blank:
            ev = dict(verify.NO_MATCH)
        else:
            ev = verify.verify(ra, rb, det.keypoints, sha_a=shas[a], sha_b=shas[b],
                               with_map=True)  # fmt: skip
        feats = detector.pair_features(ra, rb, ev, det, tm_sim=None if tm is None else tm[n])
        ev.pop("map_ab", None)
        note = ""
        if blank:
            note = "blank panel: no content, no evidence (" + ", ".join(blank) + ")"
        elif ev["rejected"]:
            note = f"keypoint fit rejected: {ev['rejected']}"
        rows.append({"a": a, "b": b, "pair_score": detector.pair_score(feats, det),
                     **ev, **feats, "blank": bool(blank), "note": note})  # fmt: skip
    names = dict.fromkeys(["a", "b", "pair_score", *verify.NO_MATCH, *detector.FEATURES])
    table = pd.DataFrame(rows, columns=[*names, "blank", "note"])
    same = same_content(recs)
    for margin, value in detector.MARGINS.items():
        if value == "tm_sim" and tm is None:  # no template check: all 0, no rivals to find
            table[margin] = 0.0
            continue
        rival = detector.rivals(table, value, same)
        typical = detector.typical_rival(det, margin)
        table[margin] = table[value].to_numpy(dtype=float) - np.where(
            np.isnan(rival), typical, rival
        )
    # the same for every column: whether either image has another candidate
    table["has_rival"] = ~np.isnan(rival)
    return table


def template_scores(pairs: list, recs: dict, show_progress: bool = True) -> np.ndarray | None:
    """The dense template score of every pair (:func:`bfutils.template.similarities`), all at
    once; None when the records carry no template patches (a detector without the check)."""
    keys = {key for pair in pairs for key in pair}
    if not pairs or any("tpatch" not in recs[key] for key in keys):
        return None
    prepared = {key: template.prepare(recs[key]["tpatch"]) for key in keys}
    with progress.bar(total=len(keys), desc="template", unit="img",
                      disable=not show_progress) as bar:  # fmt: skip
        return template.similarities(pairs, prepared, bar=bar)


def same_content(recs: dict):
    """``same(key_1, key_2)``: whether two images are near-identical by their copy descriptors
    (:data:`SAME_COPY_COSINE`), e.g. a library holding one image twice (two library images
    are never compared with each other) or one panel pasted unchanged in two figures.

    Strong keypoint evidence between the two was tried as well and dropped: neighbouring MRI
    slices share that much structure, and exempting their rivals raised the false pairs on
    the planted benchmark from 20 to 50 per 1,000 panels (muAP 0.788 -> 0.751)."""

    vectors = {key: r["copy"].astype(np.float32) for key, r in recs.items() if "copy" in r}

    @functools.cache  # asked again for every margin column
    def ordered(k1: str, k2: str) -> bool:
        c1, c2 = vectors.get(k1), vectors.get(k2)
        return c1 is not None and c2 is not None and float(c1 @ c2) >= SAME_COPY_COSINE

    def same(k1: str, k2: str) -> bool:
        return ordered(k1, k2) if k1 <= k2 else ordered(k2, k1)

    return same


def fused_scores(table: pd.DataFrame, det: detector.Detector) -> np.ndarray:
    """The detector's fused score of each row of :func:`verify_pairs` (0 for a blank panel)."""
    if not len(table):
        return np.zeros(0)
    score = det.score({n: table[n].to_numpy() for n in det.features})
    # pairs the fused model cannot tell apart (no keypoint evidence) keep their cosine order
    score = np.clip(score + TIE_BREAK * table["pair_score"].clip(-1, 1).to_numpy(), 0, 1)
    return np.where(table["blank"], 0.0, score)


def score_pairs(pairs, recs, shas, det, show_progress=True) -> pd.DataFrame:
    """Verify and score candidate pairs; one row per pair, highest score first.

    Args:
        pairs: iterable of ``(key_a, key_b)``.
        recs: descriptors by panel key.
        shas: content hash by panel key.
        det: the detector.
        show_progress: show the ``verify`` bar.

    Returns:
        A frame with :data:`COLUMNS` (plus ``mirror`` and ``rejected``). A pair with a blank
        panel scores 0.
    """
    table = verify_pairs(pairs, recs, shas, det, show_progress=show_progress)
    table["score"] = fused_scores(table, det)
    table = table.reindex(columns=[*COLUMNS, "mirror", "rejected"])
    table["flagged"] = table["score"] >= det.threshold
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def find(
    panels_dir: str | Path,
    reference: str | Path | None = None,
    detector_file: detector.Detector | str | Path | None = None,
    out: str | Path | None = None,
    k: int = 10,
    within: bool | None = None,
    self_check: bool = False,
    cache: str | Path | None | bool = True,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Find pairs of panels where one was derived from the other (the function behind the CLI).

    Args:
        panels_dir: folder of panels (searched recursively).
        reference: optional folder of reference images (keys prefixed ``ref/``).
        detector_file: a detector, a detector file, or None for the default.
        out: if given, write ``pairs.csv``, ``skipped.csv`` and ``report.html`` there.
        k: candidates verified per image and direction.
        within: also compare panels with each other (default: yes without ``reference``,
            no with it).
        self_check: also look for repeated regions inside each image (pairs ``(a, a)``).
        cache: descriptor cache folder, True for :func:`bfutils.descriptors.default_cache_dir`,
            False/None for none.
        show_progress: progress bars for embed, index, verify.

    Returns:
        Every verified pair, highest score first (columns :data:`COLUMNS`); ``attrs`` holds
        ``threshold``, ``skipped`` (a frame: file, reason), ``n_panels`` and ``seconds``.
    """
    t0 = time.perf_counter()
    det = detector.resolve(detector_file)
    items, skipped = panels.scan(panels_dir)
    ref_items: list[panels.Panel] = []
    if reference is not None:
        ref_items, ref_skipped = panels.scan(reference, prefix="ref/")
        skipped += ref_skipped
    if cache is True:
        cache = descriptors.default_cache_dir()
    cache_dir = Path(cache) / "descriptors" / det.cache_key() if cache else None
    by_sha, bad = descriptors.describe(
        items + ref_items, det, cache_dir, show_progress=show_progress
    )
    reasons = {s["sha"]: s["reason"] for s in bad}
    skipped += [{"file": p.key, "reason": reasons[p.sha]} for p in items + ref_items
                if p.sha in reasons]  # fmt: skip
    recs = {p.key: by_sha[p.sha] for p in items + ref_items if p.sha in by_sha}
    shas = {p.key: p.sha for p in items + ref_items}
    queries = [p.key for p in items if p.key in recs]
    refs = [p.key for p in ref_items if p.key in recs]
    within = reference is None if within is None else within
    det = _with_background(det, recs)
    candidates, recs = shortlist_all(queries, refs, recs, det, k=k, within=within,
                                     show_progress=show_progress)  # fmt: skip
    table = score_pairs(sorted(candidates), recs, shas, det, show_progress=show_progress)
    if self_check:
        inside = self_pairs(queries, recs, det)
        if len(inside):  # an empty frame has object columns: concatenated, "flagged" would be too
            table = pd.concat([table, inside], ignore_index=True)
            table = table.sort_values("score", ascending=False, kind="stable")
            table = table.reset_index(drop=True)
    table["flagged"] = table["flagged"].astype(bool)
    table.attrs.update(
        threshold=det.threshold, n_panels=len(queries) + len(refs),
        skipped=pd.DataFrame(skipped, columns=["file", "reason"]),
        seconds=round(time.perf_counter() - t0, 2), detector=det.provenance,
    )  # fmt: skip
    if out is not None:
        from bfutils import findreport

        findreport.write(table, out, panels_dir=panels_dir, reference=reference)
    return table


def self_pairs(keys, recs, det, min_evidence: float = SELF_EVIDENCE) -> pd.DataFrame:
    """Repeated regions inside each image, as pairs ``(a, a)``.

    The fused model compares two images' descriptors, which a region and its copy inside one
    image do not have; these pairs are scored by the keypoint evidence alone, scaled so that
    the detector's threshold falls at ``min_evidence``: ``score = threshold * evidence /
    min_evidence`` (at most 1); flagged when chance explains the inliers at most once in
    ``10**min_evidence``.
    """
    rows = []
    for key in keys:
        r = recs[key]
        if bool(r["blank"]):
            continue
        ev = verify.self_similar(r, det.keypoints)
        if ev["inliers"] == 0:
            continue
        score = min(1.0, det.threshold * ev["evidence"] / min_evidence)
        rows.append(
            {
                "a": key,
                "b": key,
                "score": score,
                "pair_score": 0.0,
                "flagged": ev["evidence"] >= min_evidence,
                "cos_global": np.nan,
                "cos_region": np.nan,
                **ev,
                "note": "repeated region inside one image (keypoint evidence only)",
            }
        )
    return pd.DataFrame(rows, columns=[*COLUMNS, "mirror", "rejected"])


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("panels", help="folder of panels (searched recursively)")
    ap.add_argument("--reference", default=None, help="folder of reference images")
    ap.add_argument("--detector", default=None, help="detector file (default: the shipped one)")
    ap.add_argument("--out", default="find-out", help="output folder (report.html, pairs.csv)")
    ap.add_argument("--k", type=int, default=10, help="candidates verified per image")
    ap.add_argument("--self-check", action="store_true", help="repeated regions inside images")
    ap.add_argument("--no-cache", action="store_true", help="do not cache descriptors")
    args = ap.parse_args(argv)
    try:
        table = find(args.panels, reference=args.reference, detector_file=args.detector,
                     out=args.out, k=args.k, self_check=args.self_check,
                     cache=not args.no_cache)  # fmt: skip
    except (FileNotFoundError, ValueError, copydesc.MissingModel, localfeat.MissingModel) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    flagged = table[table["flagged"]]
    print(f"{len(flagged)} flagged pairs among {table.attrs['n_panels']} panels "
          f"({len(table.attrs['skipped'])} files skipped) in {table.attrs['seconds']:.0f} s; "
          f"report: {Path(args.out) / 'report.html'}")  # fmt: skip
    if len(flagged):
        print(flagged[["a", "b", "score", "inliers", "transform"]].head(20).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
