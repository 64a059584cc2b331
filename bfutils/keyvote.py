"""A second shortlist from the keypoints themselves: images that share distinctive local
descriptors become candidates, whatever a global descriptor says about them.

A global CNN descriptor misses the copies that matter most in figures: a panel cut from part of
a larger image, rotated or mirrored, or covered with labels and arrows. Their local features
still match. Every image's RootSIFT descriptors go into one faiss index; each descriptor of
each image (and its mirror twin, :data:`bfutils.verify.MIRROR`, for flipped copies; SIFT is
already rotation invariant) looks up its nearest neighbours in the other images and votes for
the image of its nearest one when that passes Lowe's ratio test against the nearest descriptor
of any *other* image. Images that collect many votes from each other are shortlisted. This is
the voting stage of classic instance retrieval (Lowe 2004; Jegou et al. 2008), without the
geometry, which :func:`bfutils.verify.verify` then checks on the shortlist only.

Cost grows with the number of keypoints: exact search (``IndexFlatL2``) up to
:data:`EXACT_MAX` descriptors, beyond that an inverted file of 4-bit PQ codes with exact
re-ranking (:class:`_Index`), about linear and approximate.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from bfutils import progress, verify

EXACT_MAX = 60_000
"""Descriptors up to which the index is exact; beyond, an inverted file."""
LIST_SIZE = 512
"""Average descriptors per inverted list (the list count grows with the keypoints)..."""
MAX_LISTS = 4096
"""... up to this many lists; beyond, the lists grow longer. Training the coarse quantizer is
k-means over 40 descriptors per list, so its cost grows with the square of the list count:
7,300 lists (10,000 panels, 3.7 M keypoints) took 34 s to train against 0.7 s for 750, which
made the 10k scan 12.2x the 1k one; 4,096 lists train in 8.9 s (random 128-d data, 2 cores).
The longer lists cost little: the 4-bit fast scan of the codes is cheap next to the exact
re-ranking (the 10k keypoint stage went from 129 s to 103 s)."""
NPROBE = 8
"""Inverted lists visited per look-up."""
RERANK = 2
"""Approximate neighbours fetched per neighbour kept, re-ranked by exact distance."""
NEIGHBOURS = 8
"""Neighbours fetched per descriptor (the nearest of another image must be among them)."""
COMMON_D2 = 0.08
"""Squared RootSIFT distance under which two descriptors are the same local pattern (about the
nearest other-image neighbour of the closest ~20 % of all descriptors on the seed-0 planted
benchmark: 10 % lie under 0.044, 25 % under 0.094)."""
COMMON_IMAGES = 3
"""A descriptor found in this many other images is an annotation or a generic pattern, not
evidence of reuse (a reused region appears in two or three images)."""


class _Index:
    """All keypoint descriptors of a scan, searchable by row; exact distances out.

    Up to :data:`EXACT_MAX` descriptors, a flat index (exact). Beyond, an inverted file with
    :data:`LIST_SIZE` descriptors per list on average and an HNSW coarse quantizer, storing
    4-bit product-quantised codes searched with SIMD ("fast scan", 32 bytes a descriptor
    instead of 512); its :data:`RERANK` x k approximate neighbours are re-ranked with exact
    RootSIFT distances from the stored uint8 descriptors. Cost per look-up is then about
    constant, so the stage grows linearly with the number of keypoints (an exact or
    ``4 sqrt(N)``-list index grows as N^2 or N^1.5). Measured on 1.83 M RootSIFT descriptors
    (the planted benchmark's 262k plus six noisy copies of them, 2 cores): exact 110-300
    look-ups/s, ``IVF4sqrt(N),Flat`` 8,400/s, this index ~45,000/s before re-ranking.
    """

    def __init__(self, raw: np.ndarray, seed: int = 0):
        self.raw = raw
        n = len(raw)
        self.exact = n <= EXACT_MAX
        if self.exact:
            self.index = faiss.IndexFlatL2(raw.shape[1])
        else:
            nlist = max(1, min(n // LIST_SIZE, MAX_LISTS))
            self.index = faiss.index_factory(raw.shape[1], f"IVF{nlist}_HNSW32,PQ64x4fs")
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(n, size=min(n, max(40 * nlist, 2048)), replace=False))
            self.index.train(self.vectors(sample))
            faiss.extract_index_ivf(self.index).nprobe = NPROBE
        for start in range(0, n, 65536):
            self.index.add(self.vectors(np.arange(start, min(n, start + 65536))))

    def vectors(self, rows: np.ndarray, mirror: bool = False) -> np.ndarray:
        """RootSIFT float32 rows (of the mirrored image's descriptors when ``mirror``)."""
        raw = self.raw[rows]
        return np.ascontiguousarray(verify.root_sift(raw[:, verify.MIRROR] if mirror else raw))

    def search(self, rows: np.ndarray, k: int, mirror: bool = False):
        """``(squared distances, ids)`` of the ``k`` nearest rows to each of ``rows``."""
        q = self.vectors(rows, mirror)
        if self.exact:
            return self.index.search(q, k)
        _, cand = self.index.search(q, RERANK * k)
        valid = cand >= 0
        vec = self.vectors(cand.clip(0).ravel()).reshape(len(q), cand.shape[1], -1)
        dist = np.where(valid, ((vec - q[:, None, :]) ** 2).sum(-1), np.inf)
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        ids = np.where(np.take_along_axis(valid, order, 1), np.take_along_axis(cand, order, 1), -1)
        return np.take_along_axis(dist, order, 1).astype(np.float32), ids


def _votes(dist, ids, owners, own: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Votes ``(query owner, voted owner)`` of a block of look-ups (squared L2 distances).

    A look-up votes for the image of its nearest neighbour outside its own image when that
    neighbour is closer than ``ratio`` times the nearest one of yet another image (or than the
    farthest fetched neighbour, when all fetched ones are in the first two images).
    """
    valid = ids >= 0
    who = np.where(valid, owners[ids.clip(0)], -1)
    other = valid & (who != own[:, None])
    first = np.argmax(other, axis=1)
    has = other[np.arange(len(who)), first]
    target = who[np.arange(len(who)), first]
    d1 = dist[np.arange(len(who)), first]
    rival = other & (who != target[:, None])
    has_rival = rival.any(axis=1)
    d2 = np.where(has_rival, dist[np.arange(len(who)), np.argmax(rival, axis=1)], dist[:, -1])
    ok = has & (d1 < ratio**2 * d2)
    return own[ok], target[ok]


def common_keypoints(dist, ids, owners, own, d2: float = None, images: int = None) -> np.ndarray:
    """Which look-ups are *common*: near-identical descriptors in ``images`` or more other images.

    Figure panels share their annotations: lane numbers, panel letters, scale-bar labels and
    arrows drawn in one font and one style across a figure. Their keypoints match between
    unrelated panels, consistently enough for a geometric fit to gather dozens of inliers
    along a row of digits. A region reused once appears in two or three images; a glyph, in
    many. Like the stop words of visual-word retrieval (Sivic & Zisserman 2003), keypoints
    whose descriptor recurs in :data:`COMMON_IMAGES` or more other images of the scan are
    dropped from voting and verification (measured on the seed-0 planted benchmark: 9 % of all
    keypoints, mostly glyphs, arrow heads and box corners).

    Args:
        dist: (Q, k) squared L2 distances of the look-ups (RootSIFT).
        ids: (Q, k) row ids of the neighbours (-1: none).
        owners: image of every indexed row.
        own: (Q,) image of every look-up.
        d2: squared distance below which two descriptors count as the same
            (default :data:`COMMON_D2`).
        images: other images needed (default :data:`COMMON_IMAGES`).
    """
    d2 = COMMON_D2 if d2 is None else d2
    images = COMMON_IMAGES if images is None else images
    who = np.where((ids >= 0) & (dist < d2), owners[ids.clip(0)], -1)
    who = np.sort(np.where(who == own[:, None], -1, who), axis=1)
    new = np.concatenate([who[:, :1] >= 0, (who[:, 1:] != who[:, :-1]) & (who[:, 1:] >= 0)], 1)
    return new.sum(axis=1) >= images


def vote_matrix(
    records: Sequence[dict], ratio: float = 0.8, show_progress: bool = True
) -> tuple[dict[tuple[int, int], int], list[np.ndarray]]:
    """Symmetric vote counts between images that share distinctive keypoints.

    Two passes over one index: the direct look-ups of every descriptor mark the common ones
    (:func:`common_keypoints`); then every other descriptor, direct and mirrored, votes, with
    common descriptors ignored as neighbours too.

    Args:
        records: per image, ``desc`` (K, 128) uint8 SIFT descriptors
            (:func:`bfutils.descriptors.keypoints`).
        ratio: Lowe's ratio for a vote.
        show_progress: show the ``keypoint index`` bar.

    Returns:
        ``(votes, common)``: ``{(i, j): votes}`` with ``i < j`` (indices into ``records``):
        votes of i's descriptors (direct and mirrored) for j plus votes of j's for i; and per
        image a boolean mask of its common keypoints.
    """
    sizes = [len(r["desc"]) for r in records]
    owners = np.concatenate([np.full(n, i) for i, n in enumerate(sizes)] + [np.zeros(0, int)])
    if len(owners) < 2:
        return {}, [np.zeros(n, bool) for n in sizes]
    index = _Index(np.concatenate([np.asarray(r["desc"], np.uint8) for r in records]))
    k = min(NEIGHBOURS, len(owners))
    block = 4096
    bar = progress.bar(
        total=2 * len(owners), desc="keypoint index", unit="kp", disable=not show_progress
    )
    dist = np.empty((len(owners), k), np.float32)
    ids = np.empty((len(owners), k), np.int64)
    for start in range(0, len(owners), block):
        rows = np.arange(start, min(len(owners), start + block))
        dist[rows], ids[rows] = index.search(rows, k)
        bar.update(len(rows))
    common = common_keypoints(dist, ids, owners, owners)
    counts: dict[tuple[int, int], int] = {}

    def add(d, i, own):
        i = np.where((i >= 0) & ~common[i.clip(0)], i, -1)  # common neighbours do not count
        a, b = _votes(d, i, owners, own, ratio)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        pairs, n = np.unique(np.stack([lo, hi], axis=1), axis=0, return_counts=True)
        for (p, q), c in zip(pairs.tolist(), n.tolist(), strict=True):
            counts[(p, q)] = counts.get((p, q), 0) + c

    keep = np.flatnonzero(~common)
    add(dist[keep], ids[keep], owners[keep])
    del dist, ids
    for start in range(0, len(keep), block):
        rows = keep[start : start + block]
        d, i = index.search(rows, k, mirror=True)
        add(d, i, owners[rows])
        bar.update(len(rows))
    bar.update(len(owners) - len(keep))
    bar.close()
    return counts, np.split(common, np.cumsum(sizes)[:-1])


def shortlist(
    keys: Sequence[str],
    recs: dict,
    k: int = 10,
    min_votes: int = 2,
    ratio: float = 0.8,
    show_progress: bool = True,
) -> tuple[dict[tuple[str, str], float], dict[str, np.ndarray]]:
    """Top-``k`` partners of every image by shared keypoint votes.

    Args:
        keys: panel keys (their records in ``recs``).
        recs: descriptors by panel key.
        k: candidates kept per image.
        min_votes: fewer shared votes than this are no candidate.
        ratio: Lowe's ratio for a vote.
        show_progress: show the ``keypoint index`` bar.

    Returns:
        ``(found, common)``: ``{(key_a, key_b): votes}`` over unordered pairs (keys sorted),
        and by key the mask of common keypoints (:func:`common_keypoints`).
    """
    counts, common = vote_matrix(
        [recs[key] for key in keys], ratio=ratio, show_progress=show_progress
    )
    per: dict[int, list[tuple[int, int]]] = {}
    for (i, j), c in counts.items():
        if c >= min_votes:
            per.setdefault(i, []).append((c, j))
            per.setdefault(j, []).append((c, i))
    found: dict[tuple[str, str], float] = {}
    for i, cands in per.items():
        for c, j in sorted(cands, reverse=True)[:k]:
            a, b = sorted((keys[i], keys[j]))
            found[(a, b)] = float(c)
    return found, dict(zip(keys, common, strict=True))
