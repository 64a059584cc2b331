"""One training loop for every variant: the schedule decides what each phase optimises.

* ``sequential`` (the paper's first scheme): phase 1 trains the projector (and the encoder when
  it is not frozen) with the Barlow Twins loss; phase 2 trains the pair head with BCE, the
  projector frozen.
* ``joint`` (the paper's second scheme): every step minimises L_BCE + lambda * L_BarlowTwins.
* ``bce_only``: the Siamese fusion head trained with BCE alone (the ablation).
* ``barlow_twins`` / ``simclr``: the self-supervised baselines; their score is the cosine
  similarity of the embeddings.

Training pairs are drawn on the fly by :class:`bfutils.pairs.PairSampler`, with the same
positive share as the evaluation pairs (the paper's code trained on ~6% positives and
evaluated on 40%). When the encoder is frozen, its features of ``cache_views`` altered views
of every training image are computed once (:class:`FeatureData`), so the CPU profile trains in
minutes; otherwise :class:`PixelData` runs the encoder on freshly altered pixels every step.
Distributed training is opt-in: launched under ``torchrun`` the loop wraps the objective in
DistributedDataParallel (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bfutils import augment, losses, metrics, models, pairs

SCHEDULES = ("sequential", "joint", "bce_only", "barlow_twins", "simclr")


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved inside every checkpoint)."""

    schedule: str = "joint"
    encoder: str = "efficientnet_lite0"
    pretrained: str | None = "lite0-offline"
    freeze_backbone: bool = True
    input_size: int = 96
    projector_widths: tuple = (1024, 1024, 256)
    head_hidden: int = 256
    epochs: int = 25  # per phase
    steps_per_epoch: int = 40
    batch_size: int = 128
    lr_start: float = 1e-3
    lr_end: float = 3e-4
    weight_decay: float = 1e-4
    bt_weight: float = 0.5  # lambda of the joint loss L_BCE + lambda * L_BT
    redundancy_weight: float = 5e-3  # lambda inside the Barlow Twins loss
    temperature: float = 0.2  # NT-Xent (SimCLR)
    patience: int = 6  # epochs without a better validation ROC-AUC before a phase stops
    cache_views: int = 8  # altered views per training image when features are cached
    positive_share: float = 0.4
    hard_share: float = 0.4
    device: str = "auto"
    amp: bool = True  # mixed precision, used on CUDA only
    seed: int = 0

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        self.projector_widths = tuple(int(w) for w in self.projector_widths)


@dataclass
class Phase:
    """What one phase optimises: loss weights, trainable parts, how the model scores pairs."""

    name: str
    losses: dict
    trainable: tuple
    score: str = "head"  # "head" (pair probability) or "cosine" (embedding similarity)
    epochs: int = 0


def phases(cfg: TrainConfig) -> list[Phase]:
    """The schedule as a list of phases."""
    enc = () if cfg.freeze_backbone else ("encoder",)
    table = {
        "sequential": [
            Phase("barlow_twins", {"bt": 1.0}, enc + ("projector",), score="cosine"),
            Phase("bce", {"bce": 1.0}, ("head",)),
        ],
        "joint": [Phase("joint", {"bce": 1.0, "bt": cfg.bt_weight}, enc + ("projector", "head"))],
        "bce_only": [Phase("bce", {"bce": 1.0}, enc + ("projector", "head"))],
        "barlow_twins": [Phase("barlow_twins", {"bt": 1.0}, enc + ("projector",), "cosine")],
        "simclr": [Phase("simclr", {"ntxent": 1.0}, enc + ("projector",), score="cosine")],
    }
    out = table[cfg.schedule]
    for p in out:
        p.epochs = cfg.epochs
    return out


# ----------------------------------------------------------------------------- data
def _to_float(x: np.ndarray, size: int, device: str) -> torch.Tensor:
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    if device.startswith("cuda"):
        t = t.pin_memory().to(device, non_blocking=True)
    t = t.float().div_(255.0)
    if t.shape[-1] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True)
    if device.startswith("cuda"):
        t = t.contiguous(memory_format=torch.channels_last)
    return t


class FeatureData:
    """Cached frozen-encoder features: altered views of training images, evaluation pairs.

    View 0 of every training image is the original, views 1..V-1 random alterations from
    the catalogue. Positive training pairs are two different views of one image; negatives
    are views of two images chosen by the pair sampler (easy and hard alike).
    """

    def __init__(self, model, manifest, images, eval_sets, cfg, device, rank=0):
        self.device, self.cfg = device, cfg
        rng = np.random.default_rng([cfg.seed, 7])
        self.sampler = pairs.PairSampler(
            manifest, images, seed=cfg.seed + 1000 * rank,
            config=pairs.PairConfig(positive_share=cfg.positive_share, hard_share=cfg.hard_share),
        )  # fmt: skip
        train_idx = self.sampler.index
        self.pos = {int(g): k for k, g in enumerate(train_idx)}
        views = [images[train_idx]]
        for _ in tqdm(range(cfg.cache_views - 1), desc="alter views"):
            alts = [augment.random_alteration(rng) for _ in train_idx]
            views.append(augment.apply_batch(images[train_idx], alts))
        enc = lambda x: self._encode(model, x)  # noqa: E731
        self.views = torch.stack([enc(v) for v in tqdm(views, desc="encode views")])
        self.eval = {s: (enc(a), enc(b)) for s, (_, a, b) in eval_sets.items()}
        self.rng = np.random.default_rng([cfg.seed, 11, rank])

    def _encode(self, model, x):
        f = models.encode_images(
            model.encoder, model_norm(model), x, size=self.cfg.input_size,
            batch_size=128, device=self.device, progress=False,
        )  # fmt: skip
        return torch.from_numpy(f).to(self.device)

    def embed(self, model, f):
        """Projector output of cached features."""
        return model.projector(f)

    def view_batch(self, n):
        """Two different views of ``n`` training images."""
        i = self.rng.integers(self.views.shape[1], size=n)
        v1 = self.rng.integers(self.views.shape[0], size=n)
        v2 = (v1 + self.rng.integers(1, self.views.shape[0], size=n)) % self.views.shape[0]
        return self.views[v1, i], self.views[v2, i]

    def pair_batch(self, n):
        """Labelled pairs with the evaluation rules, as cached view features."""
        plan = self.sampler.plan(n)
        ia = np.array([self.pos[i] for i in plan["idx_a"]])
        ib = np.array([self.pos[i] for i in plan["idx_b"]])
        v = self.views.shape[0]
        va = self.rng.integers(v, size=n)
        vb = self.rng.integers(v, size=n)
        same = ia == ib
        vb[same] = (va[same] + self.rng.integers(1, v, size=same.sum())) % v
        y = torch.tensor(plan["label"].to_numpy(), dtype=torch.float32, device=self.device)
        return self.views[va, ia], self.views[vb, ib], y

    def eval_logits_or_cos(self, model, split, score):
        fa, fb = self.eval[split]
        return _score_batches(model, fa, fb, score, embed=self.embed)


class PixelData:
    """Freshly altered pixels every step; the encoder runs (and may train)."""

    def __init__(self, model, manifest, images, eval_sets, cfg, device, rank=0):
        self.device, self.cfg, self.images = device, cfg, images
        self.sampler = pairs.PairSampler(
            manifest, images, seed=cfg.seed + 1000 * rank,
            config=pairs.PairConfig(positive_share=cfg.positive_share, hard_share=cfg.hard_share),
        )  # fmt: skip
        self.eval = {s: (a, b) for s, (_, a, b) in eval_sets.items()}
        self.rng = np.random.default_rng([cfg.seed, 11, rank])

    def embed(self, model, x):
        return model.embed(x)

    def view_batch(self, n):
        idx = self.rng.choice(self.sampler.index, size=n)
        v = [augment.view_pair(self.images[i], self.rng)[:2] for i in idx]
        s, d = self.cfg.input_size, self.device
        return _to_float(np.stack([a for a, _ in v]), s, d), _to_float(
            np.stack([b for _, b in v]), s, d
        )

    def pair_batch(self, n):
        a, b, y, _ = self.sampler.batch(n)
        s, d = self.cfg.input_size, self.device
        return _to_float(a, s, d), _to_float(b, s, d), torch.from_numpy(y).to(d)

    def eval_logits_or_cos(self, model, split, score):
        a, b = self.eval[split]
        s, d = self.cfg.input_size, self.device
        out = []
        for k in range(0, len(a), 128):
            xa, xb = _to_float(a[k : k + 128], s, d), _to_float(b[k : k + 128], s, d)
            out.append(_score_batches(model, xa, xb, score, embed=self.embed))
        return np.concatenate(out)


def model_norm(model) -> tuple:
    return (tuple(model.mean.flatten().tolist()), tuple(model.std.flatten().tolist()))


def _score_batches(model, xa, xb, score, embed):
    # restore every module's own mode afterwards: a plain model.train() would put a frozen
    # projector (sequential phase 2) back in train mode and let its BatchNorm statistics drift
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            za, zb = embed(model, xa), embed(model, xb)
            if score == "cosine":
                s = F.cosine_similarity(za, zb, dim=1)
            else:
                s = torch.sigmoid(model.head(za, zb))
    finally:
        for module, mode in modes.items():
            module.training = mode
    return s.float().cpu().numpy()


# ----------------------------------------------------------------------------- loop
class Objective(nn.Module):
    """The loss of one phase as a module, so DistributedDataParallel can wrap it."""

    def __init__(self, model, data, phase, cfg):
        super().__init__()
        self.model, self.data, self.phase, self.cfg = model, data, phase, cfg

    def forward(self, batch: dict) -> dict:
        out, emb = {}, lambda x: self.data.embed(self.model, x)  # noqa: E731
        if "v1" in batch:
            z1, z2 = emb(batch["v1"]), emb(batch["v2"])
            if "bt" in self.phase.losses:
                out["bt"] = losses.barlow_twins_loss(
                    z1.float(), z2.float(), redundancy_weight=self.cfg.redundancy_weight
                )
            if "ntxent" in self.phase.losses:
                out["ntxent"] = losses.nt_xent_loss(
                    z1.float(), z2.float(), temperature=self.cfg.temperature
                )
        if "a" in batch:
            logits = self.model.head(emb(batch["a"]), emb(batch["b"]))
            out["bce"] = losses.pair_bce_loss(logits.float(), batch["y"])
        out["total"] = sum(w * out[k] for k, w in self.phase.losses.items())
        return out


def _draw(data, phase, n) -> dict:
    batch = {}
    if {"bt", "ntxent"} & set(phase.losses):
        batch["v1"], batch["v2"] = data.view_batch(n)
    if "bce" in phase.losses:
        batch["a"], batch["b"], batch["y"] = data.pair_batch(n)
    return batch


def _set_trainable(model, phase):
    for name in ("encoder", "projector", "head"):
        part = getattr(model, name)
        on = name in phase.trainable
        if name == "encoder" and model.freeze_backbone:
            on = False
        part.requires_grad_(on)
    model.train()
    for name in ("projector", "head"):  # a frozen part keeps its BatchNorm statistics
        if name not in phase.trainable:
            getattr(model, name).eval()
    return [p for p in model.parameters() if p.requires_grad]


def _distributed():
    """(rank, world) under torchrun, initialising the process group once; (0, 1) otherwise."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def optimiser(params, phase, cfg, device):
    """AdamW with cosine decay from ``lr_start`` to ``lr_end`` over the phase, and a scaler
    for mixed precision (enabled on CUDA only)."""
    opt = torch.optim.AdamW(params, lr=cfg.lr_start, weight_decay=cfg.weight_decay)
    total = max(1, phase.epochs * cfg.steps_per_epoch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=cfg.lr_end)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.startswith("cuda"))
    return opt, sched, scaler


def train_step(objective, batch, opt, sched, scaler, where="") -> dict:
    """One optimiser step on one batch; stops with a clear error on a NaN/inf loss."""
    with torch.autocast("cuda", dtype=torch.float16, enabled=scaler.is_enabled()):
        out = objective(batch)
    if not torch.isfinite(out["total"]):
        terms = {k: v.item() for k, v in out.items()}
        raise FloatingPointError(
            f"loss is {out['total'].item()} at {where}: terms {terms}; "
            "lower lr_start or check the input images"
        )
    opt.zero_grad(set_to_none=True)
    scaler.scale(out["total"]).backward()
    scaler.step(opt)
    scaler.update()
    sched.step()
    return out


def run_phase(model, data, phase, cfg, k, log, ckpt=None, start_epoch=0, state=None):
    """Train one phase with AdamW, cosine decay, early stopping on validation ROC-AUC."""
    rank, world = _distributed()
    params = _set_trainable(model, phase)
    objective = Objective(model, data, phase, cfg)
    if world > 1:
        objective = nn.parallel.DistributedDataParallel(objective, find_unused_parameters=True)
    opt, sched, scaler = optimiser(params, phase, cfg, device=data.device)
    best = {"auc": -1.0, "epoch": -1, "state": None, "bad": 0}
    if state:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        best.update(state["best"])
    for epoch in range(start_epoch, phase.epochs):
        t0, sums = time.perf_counter(), {}
        for step in range(cfg.steps_per_epoch):
            batch = _draw(data, phase, cfg.batch_size)
            out = train_step(
                objective, batch, opt, sched, scaler, where=f"epoch {epoch} step {step}"
            )
            for key, v in out.items():
                sums[key] = sums.get(key, 0.0) + v.item() / cfg.steps_per_epoch
        if world > 1:
            _sync_from_rank0(model)  # BatchNorm running stats drift apart between ranks
        val = data.eval_logits_or_cos(model, "val", phase.score)
        auc = metrics.roc_auc(data.val_labels, val)
        row = {"phase": phase.name, "epoch": epoch, "lr": sched.get_last_lr()[0],
               "val_roc_auc": auc, "seconds": time.perf_counter() - t0}  # fmt: skip
        log.append(row | {f"loss_{key}": v for key, v in sums.items()})
        if auc > best["auc"]:
            best.update(auc=auc, epoch=epoch, bad=0, state=_clone(model.state_dict()))
        else:
            best["bad"] += 1
        if ckpt is not None and rank == 0:
            torch.save({"config": asdict(cfg), "phase": k, "epoch": epoch + 1,
                        "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "best": best,
                        "log": log}, ckpt)  # fmt: skip
        if best["bad"] >= cfg.patience:
            break
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return best


def _sync_from_rank0(model):
    """Copy every parameter and buffer of rank 0 to the other ranks, in place."""
    import torch.distributed as dist

    with torch.no_grad():
        for t in model.state_dict().values():
            dist.broadcast(t, src=0)


def _clone(state):
    return {k: v.detach().clone() for k, v in state.items()}


def train(cfg, manifest, images, eval_sets, checkpoint=None, resume=None, progress=True, data=None):
    """Build the model, prepare the data, run every phase of the schedule.

    Args:
        cfg: a :class:`TrainConfig`.
        manifest: full manifest with ``split``; images row-aligned.
        images: all images (N, H, W, 3) uint8.
        eval_sets: ``{"val": (pairs, a, b), "test": (pairs, a, b)}`` from
            :func:`bfutils.pairs.load_pairs`.
        checkpoint: where to save a checkpoint after every epoch (config included).
        resume: a checkpoint to continue from (completed phases are skipped).
        progress: show tqdm bars for the phases.
        data: a :class:`FeatureData` from an earlier run with the same frozen encoder and
            input size, to reuse its cached features (several baselines in one notebook).

    Returns:
        ``(model, data, history)``: the trained model (best validation epoch of each phase),
        the data provider (for scoring) and the per-epoch history as a DataFrame.
    """
    from bfutils import runlog

    rank, _ = _distributed()
    device = runlog.resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # every rank builds identical initial weights
    model = models.build_model(
        encoder=cfg.encoder, pretrained=cfg.pretrained, projector_widths=cfg.projector_widths,
        head_hidden=cfg.head_hidden, freeze_backbone=cfg.freeze_backbone,
    ).to(device)  # fmt: skip
    kind = FeatureData if cfg.freeze_backbone else PixelData
    same = ("encoder", "pretrained", "input_size", "cache_views", "seed")
    if not isinstance(data, kind) or any(getattr(data.cfg, k) != getattr(cfg, k) for k in same):
        data = kind(model, manifest, images, eval_sets, cfg, device, rank=rank)
    data.val_labels = eval_sets["val"][0]["label"].to_numpy()
    log, first, start, state = [], 0, 0, None
    if resume:
        saved = torch.load(resume, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        first, start, log, state = saved["phase"], saved["epoch"], saved["log"], saved
    for k, phase in enumerate(tqdm(phases(cfg), desc=cfg.schedule, disable=not progress)):
        if k < first:
            continue
        run_phase(model, data, phase, cfg, k, log, ckpt=checkpoint,
                  start_epoch=start if k == first else 0,
                  state=state if k == first else None)  # fmt: skip
    model.eval()
    return model, data, pd.DataFrame(log)


def predictions(model, data, eval_sets, cfg, name) -> pd.DataFrame:
    """Scores of the validation and test pairs, one row per pair."""
    score = phases(cfg)[-1].score
    frames = []
    for split, (table, _, _) in eval_sets.items():
        s = data.eval_logits_or_cos(model, split, score)
        frames.append(prediction_frame(table, s, name))
    return pd.concat(frames, ignore_index=True)


def prediction_frame(table: pd.DataFrame, scores: np.ndarray, model: str) -> pd.DataFrame:
    """The predictions-file layout: pair_id, split, label, score, family, kind, detail."""
    cols = ["pair_id", "split", "label", "family", "negative_kind", "hard_detail"]
    out = table[cols].copy()
    out.insert(3, "score", np.asarray(scores, dtype=float))
    out.insert(0, "model", model)
    if not np.isfinite(out["score"]).all():
        raise FloatingPointError(f"{model}: non-finite scores")
    return out


def reference_predictions(data, eval_sets, name="imagenet_cnn") -> pd.DataFrame:
    """Cosine similarity of the untrained (frozen, pretrained) encoder's features of each pair.

    The analogue of imagededup's CNN method, and the reference a trained head must beat.
    """
    if not isinstance(data, FeatureData):
        raise ValueError("reference_predictions needs cached features (freeze_backbone=True)")
    frames = []
    for split, (table, _, _) in eval_sets.items():
        fa, fb = data.eval[split]
        frames.append(
            prediction_frame(table, F.cosine_similarity(fa, fb, dim=1).cpu().numpy(), name)
        )
    return pd.concat(frames, ignore_index=True)


def save_model(model, cfg: TrainConfig, path) -> None:
    """Weights and the config that built them, in one file."""
    torch.save({"config": asdict(cfg), "model": model.state_dict()}, path)


def load_model(path, device="cpu"):
    """Rebuild a model saved by :func:`save_model` (no weights are fetched)."""
    saved = torch.load(path, map_location=device, weights_only=False)
    cfg = TrainConfig(**saved["config"])
    model = models.build_model(
        encoder=cfg.encoder, pretrained=None, projector_widths=cfg.projector_widths,
        head_hidden=cfg.head_hidden, freeze_backbone=cfg.freeze_backbone,
    )  # fmt: skip
    model.load_state_dict(saved["model"])
    return model.to(device).eval(), cfg
