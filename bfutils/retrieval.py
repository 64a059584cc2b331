"""Copy-detection retrieval on the test split, in the style of DISC21 and SSCD.

DISC21 (Douze et al. 2021, https://arxiv.org/abs/2106.09672) and SSCD (Pizzi et al. 2022,
https://arxiv.org/abs/2202.10261) ask: given an edited query image, which image of a reference
collection was it copied from, if any? Here the references are a seeded share of the test
images, unaltered. Queries are altered copies (one recorded alteration from the catalogue of
:mod:`bfutils.augment`) of some references, plus altered copies of every remaining test image,
the distractors: they have no source among the references. Distractors are kept even when they
are neighbouring slices or adjacent tiles of a reference, since such look-alikes are what makes
copy detection hard in biomedical figures.

Every method returns a full (Q, R) similarity matrix, scored by
:func:`bfutils.metrics.retrieval_metrics` (top-k accuracy and micro average precision). Images
are encoded once each; pairs are scored by matrix products or, for the Siamese pair head, in
vectorised blocks of pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from bfutils import augment, classic, metrics, models, registry, train
from bfutils.progress import bar as tqdm

MODEL_METHODS = ("pair_model", "cosine_embedding", "cosine_encoder")
METHODS = MODEL_METHODS + classic.HASH_METHODS
# The retrieval method of each way a saved model scores pairs (bfutils.registry.SCORING).
SCORING_METHOD = {"head": "pair_model", "cosine": "cosine_embedding"}
BUILD_KEYS = ("queries", "references", "gt", "table")
RESULT_COLUMNS = [
    "model", "method", "top1", "top5", "top10", "micro_ap",
    "n_queries", "n_references", "n_distractors",
]  # fmt: skip
_PAIRS_PER_BLOCK = 1 << 15  # pair-head inputs per forward pass (~100 MB at D = 256)


# ----------------------------------------------------------------------------- queries
def _split_index(manifest: pd.DataFrame, images: np.ndarray, split: str) -> np.ndarray:
    """Row numbers of ``split``, with clear errors for a malformed manifest or split."""
    if "split" not in manifest.columns or "image_id" not in manifest.columns:
        raise ValueError(f"manifest needs columns 'split' and 'image_id'; has {list(manifest)}")
    if len(manifest) != len(images):
        raise ValueError(f"manifest has {len(manifest)} rows but images has {len(images)}")
    index = np.flatnonzero(manifest["split"].to_numpy() == split)
    if len(index) < 2:
        found = sorted(manifest["split"].astype(str).unique())
        raise ValueError(f"split={split!r} has {len(index)} image(s), need >= 2; splits: {found}")
    return index


def build_queries(
    manifest: pd.DataFrame,
    images: np.ndarray,
    split: str = "test",
    ref_share: float = 2 / 3,
    query_share: float = 0.5,
    seed: int = 0,
) -> dict:
    """References, altered queries and ground truth for one split.

    A seeded ``ref_share`` of the split's images become the references (unaltered); the others
    are distractor sources. Queries are an altered copy of a seeded ``query_share`` of the
    references (ground truth: that reference) and an altered copy of every distractor source
    (ground truth -1), in a seeded random order. Each alteration is drawn from the whole
    catalogue by :func:`bfutils.augment.random_alteration` and recorded as JSON.

    Args:
        manifest: table with ``image_id`` and ``split``, row ``k`` describing ``images[k]``.
        images: (N, H, W, 3) uint8 images.
        split: the split to draw from.
        ref_share: share of the split's images used as references, in (0, 1).
        query_share: share of the references that get a matching query, in (0, 1].
        seed: seed of every random choice; the same seed gives the same queries.

    Returns:
        Dict with ``queries`` (Q, H, W, 3) and ``references`` (R, H, W, 3) uint8, ``gt`` (Q,)
        reference index or -1, ``reference_ids`` (R,) image ids, ``reference_rows`` and
        ``query_rows`` (rows of ``manifest``) and ``table``: one row per query with
        ``query_id``, ``source_image_id``, ``gt_reference_id`` ("" for distractors),
        ``family`` and ``alteration`` (JSON).
    """
    if not 0 < ref_share < 1 or not 0 < query_share <= 1:
        raise ValueError(
            f"need 0 < ref_share < 1 and 0 < query_share <= 1; got ref_share={ref_share}, "
            f"query_share={query_share}"
        )
    index = _split_index(manifest, images=images, split=split)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(index)
    n_ref = min(len(index) - 1, max(1, round(ref_share * len(index))))
    ref_rows, distractor_rows = np.sort(shuffled[:n_ref]), np.sort(shuffled[n_ref:])
    n_matched = max(1, round(query_share * n_ref))
    matched = np.sort(rng.choice(n_ref, size=n_matched, replace=False))
    source_rows = np.concatenate([ref_rows[matched], distractor_rows])
    gt = np.concatenate([matched, np.full(len(distractor_rows), -1)])
    order = rng.permutation(len(gt))  # the query order must not reveal which have a source
    source_rows, gt = source_rows[order], gt[order]
    alts = [augment.random_alteration(rng) for _ in source_rows]
    queries = augment.apply_batch(images[source_rows], alts)
    ids = manifest["image_id"].astype(str).to_numpy()
    table = pd.DataFrame({
        "query_id": [f"q{k:05d}" for k in range(len(gt))],
        "source_image_id": ids[source_rows],
        "gt_reference_id": np.where(gt >= 0, ids[ref_rows[np.maximum(gt, 0)]], ""),
        "family": [a.family for a in alts],
        "alteration": [a.to_json() for a in alts],
    })  # fmt: skip
    return {
        "queries": queries, "references": images[ref_rows], "gt": gt.astype(int),
        "reference_ids": ids[ref_rows], "reference_rows": ref_rows, "query_rows": source_rows,
        "table": table,
    }  # fmt: skip


# ----------------------------------------------------------------------------- similarity
def _check_build(build: dict) -> None:
    missing = [k for k in BUILD_KEYS if k not in build]
    if missing:
        raise ValueError(f"build lacks key(s) {missing}: pass the dict from build_queries")
    if len(build["gt"]) != len(build["queries"]):
        raise ValueError(f"build has {len(build['queries'])} queries but {len(build['gt'])} gt")


def _load(model_path, device: str):
    if model_path is None:
        raise ValueError("model_path is required for the methods " + ", ".join(MODEL_METHODS))
    if not Path(model_path).is_file():
        raise FileNotFoundError(f"model_path={str(model_path)!r} is not a file")
    return train.load_model(model_path, device=device)


def _encode(model, cfg, images, *, device, batch_size, progress, project) -> torch.Tensor:
    """Encoder features (or projector embeddings) of every image, one pass each."""
    feats = models.encode_images(
        model.encoder, train.model_norm(model), images, size=cfg.input_size,
        batch_size=batch_size, device=device, progress=progress,
    )  # fmt: skip
    f = torch.from_numpy(feats).to(device)
    if not project:
        return f
    model.eval()
    with torch.no_grad():
        return torch.cat([model.projector(chunk) for chunk in f.split(batch_size)])


def _cosine_matrix(zq: torch.Tensor, zr: torch.Tensor) -> np.ndarray:
    """(Q, R) cosine similarities; a zero vector scores 0 (as in classic.cosine_scores)."""
    return (F.normalize(zq.float(), dim=1) @ F.normalize(zr.float(), dim=1).T).cpu().numpy()


def _pair_head_matrix(model, fq: torch.Tensor, fr: torch.Tensor, progress: bool) -> np.ndarray:
    """sigmoid(pair logit) of encoder features fq[i], fr[j] for every (i, j), a block of query
    rows at a time (each side projected once)."""
    model.eval()
    with torch.no_grad():
        zq, zr = model.projector(fq), model.projector(fr)
        cos = torch.from_numpy(_cosine_matrix(fq, fr)) if model.head.residual else None
    n_ref, dim = zr.shape
    rows = max(1, _PAIRS_PER_BLOCK // max(1, n_ref))
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(zq), rows), desc="pair head", disable=not progress):
            block = zq[start : start + rows]
            za = block[:, None, :].expand(-1, n_ref, -1).reshape(-1, dim)
            zb = zr[None, :, :].expand(len(block), -1, -1).reshape(-1, dim)
            c = None if cos is None else cos[start : start + rows].reshape(-1).to(za)
            out.append(torch.sigmoid(model.head(za, zb, c)).view(len(block), n_ref).float().cpu())
    return torch.cat(out).numpy()


def hash_bits(images: np.ndarray, method: str = "phash", progress: bool = True) -> np.ndarray:
    """imagededup's 64-bit hash of every image as an (N, 64) 0/1 float32 array."""
    from imagededup import methods  # slow import, see classic.hash_scores

    hasher = getattr(methods, method[0].upper() + "Hash")(verbose=False)
    bits = np.empty((len(images), 64), dtype=np.float32)
    for k in tqdm(range(len(images)), desc=method, disable=not progress):
        value = int(hasher.encode_image(image_array=np.asarray(images[k])), 16)
        bits[k] = np.unpackbits(np.frombuffer(value.to_bytes(8, "big"), dtype=np.uint8))
    return bits


def _hash_matrix(bq: np.ndarray, br: np.ndarray) -> np.ndarray:
    """``1 - hamming / 64`` for all pairs; the bit counts are exact integers in float32."""
    hamming = bq @ (1 - br).T + (1 - bq) @ br.T
    return 1.0 - hamming.astype(float) / 64


def similarity(
    method: str,
    build: dict,
    *,
    model_path=None,
    device: str = "cpu",
    batch_size: int = 128,
    progress: bool = True,
) -> np.ndarray:
    """Similarity of every query to every reference; higher = more likely its copy.

    Args:
        method: ``pair_model`` (sigmoid of a saved Siamese model's pair head on projector
            embeddings), ``cosine_embedding`` (cosine of its projector embeddings: Barlow Twins
            and SimCLR baselines), ``cosine_encoder`` (cosine of its encoder features: the
            frozen ImageNet CNN baseline) or a perceptual hash (``phash``, ``dhash``,
            ``whash``, ``ahash``: ``1 - hamming / 64``).
        build: dict from :func:`build_queries`.
        model_path: a file written by :func:`bfutils.train.save_model` (model methods only);
            images are resized to its config's ``input_size``.
        device: torch device.
        batch_size: images per encoder pass.
        progress: show tqdm bars.

    Returns:
        (Q, R) float array.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    _check_build(build)
    q_imgs, r_imgs = build["queries"], build["references"]
    if method in classic.HASH_METHODS:
        bq = hash_bits(q_imgs, method=method, progress=progress)
        return _hash_matrix(bq, hash_bits(r_imgs, method=method, progress=progress))
    model, cfg = _load(model_path, device=device)
    project = method == "cosine_embedding"  # the pair head projects features itself
    kw = {"device": device, "batch_size": batch_size, "progress": progress, "project": project}
    zq, zr = _encode(model, cfg, q_imgs, **kw), _encode(model, cfg, r_imgs, **kw)
    if method == "pair_model":
        return _pair_head_matrix(model, zq, zr, progress=progress)
    return _cosine_matrix(zq, zr)


# ----------------------------------------------------------------------------- evaluation
def _plan(run_dir: Path) -> list[tuple[str, str, Path | None]]:
    """(row name, method, model file) for every saved model, the ImageNet CNN and phash."""
    plan, cnn = [], None
    for path in sorted(run_dir.glob("model_*.pt")):
        cfg = train.load_model(path)[1]
        method = SCORING_METHOD[registry.scoring(cfg.schedule)]
        plan.append((path.stem.removeprefix("model_"), method, path))
        # a frozen pretrained encoder still holds the ImageNet weights it was built with
        if cnn is None and cfg.pretrained is not None and cfg.keeps_pretrained_encoder:
            cnn = path
    if cnn is not None:
        plan.append(("imagenet_cnn", "cosine_encoder", cnn))
    plan.append(("phash", "phash", None))
    return plan


def evaluate_all(build: dict, run_dir, device: str = "cpu", progress: bool = True) -> pd.DataFrame:
    """Retrieval metrics of every saved model of a run, the ImageNet CNN and phash.

    Each ``model_<name>.pt`` is scored as its schedule scores (:func:`bfutils.registry.scoring`):
    ``pair_model`` for the pair head (sequential, joint, bce_only), ``cosine_embedding`` for the
    embedding cosine (barlow_twins, simclr). ``imagenet_cnn``
    is the ``cosine_encoder`` of the first saved model whose encoder is pretrained and frozen
    (left out when there is none).

    Args:
        build: dict from :func:`build_queries`.
        run_dir: folder holding the ``model_<name>.pt`` files.
        device: torch device.
        progress: show tqdm bars.

    Returns:
        One row per model: model, method, top1, top5, top10, micro_ap, n_queries,
        n_references, n_distractors.
    """
    _check_build(build)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir={str(run_dir)!r} is not a folder")
    gt = np.asarray(build["gt"])
    rows = []
    for name, method, path in tqdm(_plan(run_dir), desc="retrieval", disable=not progress):
        sim = similarity(method, build, model_path=path, device=device, progress=progress)
        m = metrics.retrieval_metrics(sim, gt)
        rows.append({
            "model": name, "method": method, "top1": m["top1"], "top5": m["top5"],
            "top10": m["top10"], "micro_ap": m["muap"], "n_queries": m["n_queries"],
            "n_references": sim.shape[1], "n_distractors": m["n_queries"] - m["n_matched"],
        })  # fmt: skip
    if (run_dir / "fused_model.joblib").exists() and not (run_dir / "fused_model.json").exists():
        print(f"fused retrieval row left out: {run_dir} holds an older fused_model.joblib "
              "(a pickle, fitted on other features); re-run notebook 04")  # fmt: skip
    if (run_dir / "fused_model.json").exists():
        sim, _ = verified_similarity(build, run_dir, device=device)
        m = metrics.retrieval_metrics(sim, gt)
        rows.append({
            "model": "fused", "method": "pair_model+verify_top10", "top1": m["top1"],
            "top5": m["top5"], "top10": m["top10"], "micro_ap": m["muap"],
            "n_queries": m["n_queries"], "n_references": sim.shape[1],
            "n_distractors": m["n_queries"] - m["n_matched"],
        })  # fmt: skip
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def verified_similarity(build: dict, run_dir, k: int = 10, device="cpu"):
    """Pair-model retrieval whose top-``k`` candidates are re-scored by the fused model.

    The classic copy-detection recipe (a global search, then geometric verification of the
    short list): keypoint matching is too slow for every (query, reference) pair, so only the
    pair model's ``k`` best references per query are matched and scored by the ``fused`` model
    fitted in notebook 04. Every other pair keeps its pair-model score shifted below all
    verified ones, so the ranking stays total (no ties).

    Returns:
        ``(similarity (Q, R), seconds spent on verification)``; each query and reference is
        described once (:func:`bfutils.baselines.verify_details`).
    """
    import time

    from bfutils import baselines

    pipeline, fuse_with = baselines.load_fused(Path(run_dir) / "fused_model.json")
    model_path = Path(run_dir) / f"model_{fuse_with}.pt"
    sim = similarity("pair_model", build, model_path=model_path, device=device, progress=False)
    k = min(k, sim.shape[1])
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    q_idx = np.repeat(np.arange(sim.shape[0]), k)
    r_idx = top.ravel()
    t0 = time.perf_counter()
    details = baselines.verify_details(build["queries"][q_idx], build["references"][r_idx])
    seconds = time.perf_counter() - t0
    out = sim - 2.0  # below every fused probability
    out[q_idx, r_idx] = baselines.fused_scores(pipeline, sim[q_idx, r_idx], details)
    return out, seconds
