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
:data:`EXACT_MAX` descriptors, beyond that an inverted file (``IndexIVFFlat``, ~4 sqrt(N)
lists, :data:`NPROBE` probed), sub-quadratic and approximate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import faiss
import numpy as np

from bfutils import progress, verify

EXACT_MAX = 60_000
"""Descriptors up to which the index is exact; beyond, an inverted file."""
NPROBE = 8
"""Inverted lists visited per look-up."""
NEIGHBOURS = 8
"""Neighbours fetched per descriptor (the nearest of another image must be among them)."""


def _index(vecs: np.ndarray, seed: int = 0) -> faiss.Index:
    """Exact L2 index for small sets, an inverted file beyond :data:`EXACT_MAX` rows."""
    d = vecs.shape[1]
    if len(vecs) <= EXACT_MAX:
        index = faiss.IndexFlatL2(d)
    else:
        nlist = int(4 * math.sqrt(len(vecs)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        rng = np.random.default_rng(seed)
        train = vecs[rng.choice(len(vecs), size=min(len(vecs), 64 * nlist), replace=False)]
        index.train(train)
        index.nprobe = NPROBE
    index.add(vecs)
    return index


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


def vote_matrix(
    records: Sequence[dict], ratio: float = 0.8, show_progress: bool = True
) -> dict[tuple[int, int], int]:
    """Symmetric vote counts between images that share distinctive keypoints.

    Args:
        records: per image, ``desc`` (K, 128) uint8 SIFT descriptors
            (:func:`bfutils.descriptors.keypoints`).
        ratio: Lowe's ratio for a vote.
        show_progress: show the ``keypoint index`` bar.

    Returns:
        ``{(i, j): votes}`` with ``i < j`` (indices into ``records``): votes of i's descriptors
        (direct and mirrored) for j plus votes of j's for i.
    """
    descs = [verify.root_sift(r["desc"]) for r in records]
    owners = np.concatenate([np.full(len(d), n) for n, d in enumerate(descs)] + [np.zeros(0, int)])
    if len(owners) < 2:
        return {}
    vecs = np.ascontiguousarray(np.concatenate(descs), dtype=np.float32)
    index = _index(vecs)
    k = min(NEIGHBOURS, len(vecs))
    counts: dict[tuple[int, int], int] = {}
    block = 4096
    bar = progress.bar(total=len(vecs), desc="keypoint index", unit="kp", disable=not show_progress)
    for start in range(0, len(vecs), block):
        q = vecs[start : start + block]
        own = owners[start : start + block]
        for query in (q, np.ascontiguousarray(q[:, verify.MIRROR])):
            dist, ids = index.search(query, k)
            a, b = _votes(dist, ids, owners, own, ratio)
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            pairs, n = np.unique(np.stack([lo, hi], axis=1), axis=0, return_counts=True)
            for (i, j), c in zip(pairs.tolist(), n.tolist(), strict=True):
                counts[(i, j)] = counts.get((i, j), 0) + c
        bar.update(len(q))
    bar.close()
    return counts


def shortlist(
    keys: Sequence[str],
    recs: dict,
    k: int = 10,
    min_votes: int = 2,
    ratio: float = 0.8,
    show_progress: bool = True,
) -> dict[tuple[str, str], float]:
    """Top-``k`` partners of every image by shared keypoint votes.

    Args:
        keys: panel keys (their records in ``recs``).
        recs: descriptors by panel key.
        k: candidates kept per image.
        min_votes: fewer shared votes than this are no candidate.
        ratio: Lowe's ratio for a vote.
        show_progress: show the ``keypoint index`` bar.

    Returns:
        ``{(key_a, key_b): votes}`` over unordered pairs (keys sorted).
    """
    counts = vote_matrix([recs[key] for key in keys], ratio=ratio, show_progress=show_progress)
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
    return found
