# About 420 lines: one concept, the training loop (schedules, phases, steps, checkpoints, DDP).
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

Early stopping needs a validation score, and the loop imports no evaluation code to get one: the
caller passes the scorer (``val_metric``, e.g. :func:`bfutils.metrics.roc_auc`), so what the
model is selected on is declared where the run is configured. The schedules and how each scores
are declared in :mod:`bfutils.registry`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bfutils import losses, models, registry
from bfutils.progress import bar as tqdm
from bfutils.trainsets import FeatureData, PixelData, _draw, model_norm  # noqa: F401 (API)

ValMetric = Callable[[np.ndarray, np.ndarray], float]
"""``val_metric(labels, scores) -> float``, higher is better (e.g. ROC-AUC)."""


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved inside every checkpoint)."""

    schedule: str = "joint"
    encoder: str = "efficientnet_lite0"
    pretrained: str | None = "lite0-offline"
    freeze_backbone: bool = True
    train_stages: int = 0  # with a frozen encoder, its last stages train on cached trunk maps
    input_size: int = 96
    projector_widths: tuple = (1024, 1024, 256)
    head_hidden: int = 256
    residual: bool = False  # feed the encoder cosine to the pair head (models.PairHead)
    epochs: int = 25  # per phase
    steps_per_epoch: int = 40
    batch_size: int = 128
    lr_start: float = 1e-3
    lr_end: float = 3e-4
    weight_decay: float = 1e-4
    bt_weight: float = 0.5  # lambda of the joint loss L_BCE + lambda * L_BT
    redundancy_weight: float = 5e-3  # lambda inside the Barlow Twins loss
    temperature: float = 0.2  # NT-Xent (SimCLR)
    patience: int = 6  # epochs without a better validation score before a phase stops
    cache_views: int = 8  # altered views per training image when features are cached
    figure_pairs: int = 0  # figure-realistic (source, query) panel pairs per training image
    figure_share: float = 0.5  # share of training pairs and view pairs drawn from them
    positive_share: float = 0.4
    hard_share: float = 0.4
    device: str = "auto"
    amp: bool = True  # mixed precision, used on CUDA only
    seed: int = 0

    def __post_init__(self):
        registry.check_schedule(self.schedule)
        self.projector_widths = tuple(int(w) for w in self.projector_widths)
        if self.figure_pairs < 0 or not 0.0 <= self.figure_share <= 1.0:
            raise ValueError(
                f"figure_pairs must be >= 0 and figure_share in [0, 1], got "
                f"{self.figure_pairs}, {self.figure_share}"
            )
        if self.train_stages < 0 or (self.train_stages and not self.freeze_backbone):
            raise ValueError(
                f"train_stages={self.train_stages}: it must be >= 0, and it needs "
                "freeze_backbone=True (the last stages train on cached trunk features; an "
                "unfrozen encoder trains every stage anyway)"
            )
        if self.figure_pairs and not self.freeze_backbone:
            raise ValueError(
                "figure_pairs needs freeze_backbone=True: figure panels are rendered once and "
                "their features cached (a trained encoder would need them every step)"
            )

    @property
    def keeps_pretrained_encoder(self) -> bool:
        """Whether the trained model's encoder is still the one it was built with (frozen, no
        trained stages): then its cosine is the untrained-encoder reference."""
        return self.freeze_backbone and not self.train_stages


def build_model(cfg: TrainConfig, pretrained: str | None = None) -> models.SiameseModel:
    """The (untrained) pair model ``cfg`` describes, with the encoder weights ``pretrained``."""
    return models.build_model(
        encoder=cfg.encoder, pretrained=pretrained, projector_widths=cfg.projector_widths,
        head_hidden=cfg.head_hidden, freeze_backbone=cfg.freeze_backbone, residual=cfg.residual,
        train_stages=cfg.train_stages,
    )  # fmt: skip


@dataclass
class Phase:
    """What one phase optimises: loss weights, trainable parts, how the model scores pairs."""

    name: str
    losses: dict
    trainable: tuple
    score: str = "head"  # "head" (pair probability) or "cosine" (embedding similarity)
    epochs: int = 0


def phases(cfg: TrainConfig) -> list[Phase]:
    """The schedule as a list of phases; the last scores pairs as the registry declares."""
    enc = ("tail",) if cfg.train_stages else () if cfg.freeze_backbone else ("encoder",)
    table = {
        "sequential": [
            # no head yet: phase 1 is selected on the cosine of its embeddings
            Phase("barlow_twins", {"bt": 1.0}, enc + ("projector",), score="cosine"),
            Phase("bce", {"bce": 1.0}, ("head",)),
        ],
        "joint": [Phase("joint", {"bce": 1.0, "bt": cfg.bt_weight}, enc + ("projector", "head"))],
        "bce_only": [Phase("bce", {"bce": 1.0}, enc + ("projector", "head"))],
        "barlow_twins": [Phase("barlow_twins", {"bt": 1.0}, enc + ("projector",))],
        "simclr": [Phase("simclr", {"ntxent": 1.0}, enc + ("projector",))],
    }
    out = table[cfg.schedule]
    out[-1].score = registry.scoring(cfg.schedule)
    for p in out:
        p.epochs = cfg.epochs
    return out


# ----------------------------------------------------------------------------- loop
class Objective(nn.Module):
    """The loss of one phase as a module, so DistributedDataParallel can wrap it."""

    def __init__(self, model, data, phase, cfg):
        super().__init__()
        self.model, self.data, self.phase, self.cfg = model, data, phase, cfg

    def forward(self, batch: dict) -> dict:
        out, emb = {}, lambda x: self.data.embed(self.model, x)  # noqa: E731
        feats = lambda x: self.data.features(self.model, x)  # noqa: E731
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
            logits = self.model.forward_from_features(feats(batch["a"]), feats(batch["b"]))
            out["bce"] = losses.pair_bce_loss(logits.float(), batch["y"])
        out["total"] = sum(w * out[k] for k, w in self.phase.losses.items())
        return out


def _set_trainable(model, phase):
    for name in ("encoder", "projector", "head"):
        part = getattr(model, name)
        on = name in phase.trainable
        if name == "encoder" and model.freeze_backbone:
            on = False
        part.requires_grad_(on)
    if "tail" in phase.trainable:  # the last encoder stages (BatchNorm statistics stay fixed)
        model.trunk_and_tail()[1].requires_grad_(True)
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


def _train_epoch(objective, data, phase, cfg, opt, sched, scaler, epoch) -> dict:
    """``cfg.steps_per_epoch`` optimiser steps; returns the epoch's mean of every loss term."""
    sums = {}
    for step in range(cfg.steps_per_epoch):
        batch = _draw(data, phase, cfg.batch_size)
        out = train_step(objective, batch, opt, sched, scaler, where=f"epoch {epoch} step {step}")
        for key, v in out.items():
            sums[key] = sums.get(key, 0.0) + v.item() / cfg.steps_per_epoch
    return sums


def score_column(val_metric: ValMetric) -> str:
    """History column of the validation score: ``val_`` + the scorer's name.

    ``val_roc_auc`` for :func:`bfutils.metrics.roc_auc`; ``val_score`` for a scorer without a
    usable name (a lambda, a :func:`functools.partial`).
    """
    name = getattr(val_metric, "__name__", "")
    return f"val_{name}" if name.isidentifier() else "val_score"


def run_phase(
    model,
    data,
    phase,
    cfg,
    k,
    log,
    *,
    val_metric,
    ckpt=None,
    start_epoch=0,
    state=None,
    progress=False,
) -> dict:
    """Train one phase with AdamW and cosine decay, stopping early on the validation score.

    Args:
        model: the :class:`bfutils.models.SiameseModel`, trained in place.
        data: a :class:`FeatureData` or :class:`PixelData` holding ``val_labels``.
        phase: the :class:`Phase` to run.
        cfg: the run's :class:`TrainConfig`.
        k: index of the phase in the schedule (recorded in checkpoints).
        log: list that gets one row per epoch (losses, learning rate, validation score).
        val_metric: ``val_metric(labels, scores) -> float``, higher is better; it picks the
            best epoch and ends the phase after ``cfg.patience`` epochs without a better one.
        ckpt: where to save a checkpoint after every epoch (rank 0 only).
        start_epoch: first epoch to run (resuming).
        state: the checkpoint to resume the optimiser, scheduler and best epoch from.
        progress: show a bar of epochs with the latest validation score.

    Returns:
        The best epoch: ``{"score", "epoch", "state", "bad"}``; the model holds its weights.
    """
    rank, world = _distributed()
    params = _set_trainable(model, phase)
    objective = Objective(model, data, phase, cfg)
    if world > 1:
        objective = nn.parallel.DistributedDataParallel(objective, find_unused_parameters=True)
    opt, sched, scaler = optimiser(params, phase, cfg, device=data.device)
    best = {"score": -np.inf, "epoch": -1, "state": None, "bad": 0}
    if state:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        best.update(state["best"])
    epochs = tqdm(
        range(start_epoch, phase.epochs),
        desc=f"{cfg.schedule}: {phase.name}",
        unit="epoch",
        disable=not progress or rank != 0,
    )
    for epoch in epochs:
        t0 = time.perf_counter()
        sums = _train_epoch(objective, data, phase, cfg, opt, sched, scaler, epoch=epoch)
        if world > 1:
            _sync_from_rank0(model)  # BatchNorm running stats drift apart between ranks
        val = data.eval_logits_or_cos(model, "val", phase.score)
        score = float(val_metric(data.val_labels, val))
        row = {"phase": phase.name, "epoch": epoch, "lr": sched.get_last_lr()[0],
               score_column(val_metric): score, "seconds": time.perf_counter() - t0}  # fmt: skip
        log.append(row | {f"loss_{key}": v for key, v in sums.items()})
        epochs.set_postfix(loss=f"{sums['total']:.3f}", val=f"{score:.3f}")
        if score > best["score"]:
            best.update(score=score, epoch=epoch, bad=0, state=_clone(model.state_dict()))
        else:
            best["bad"] += 1
        if ckpt is not None and rank == 0:
            torch.save({"config": asdict(cfg), "phase": k, "epoch": epoch + 1,
                        "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "best": best,
                        "log": log}, ckpt)  # fmt: skip
        if best["bad"] >= cfg.patience:
            epochs.set_postfix_str(
                f"early stop, best val {best['score']:.3f} at epoch {best['epoch']}"
            )
            break
    epochs.close()
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


def train(
    cfg: TrainConfig,
    manifest: pd.DataFrame,
    images: np.ndarray,
    eval_sets: dict,
    *,
    val_metric: ValMetric,
    checkpoint=None,
    resume=None,
    progress: bool = True,
    data=None,
):
    """Build the model, prepare the data, run every phase of the schedule.

    Args:
        cfg: a :class:`TrainConfig`.
        manifest: full manifest with ``split``; images row-aligned.
        images: all images (N, H, W, 3) uint8.
        eval_sets: ``{"val": (pairs, a, b), "test": (pairs, a, b)}`` from
            :func:`bfutils.pairs.load_pairs`.
        val_metric: ``val_metric(labels, scores) -> float`` on the validation pairs, higher is
            better (e.g. :func:`bfutils.metrics.roc_auc`); each phase keeps its best epoch by
            it. The history column is :func:`score_column` of it (``val_roc_auc`` there).
        checkpoint: where to save a checkpoint after every epoch (config included).
        resume: a checkpoint to continue from (completed phases are skipped).
        progress: show a bar of epochs per phase (with the latest validation score).
        data: a :class:`FeatureData` from an earlier run with the same frozen encoder and
            input size, to reuse its cached features (several baselines in one notebook). Its
            random streams restart from ``cfg.seed``, so the run trains as with a fresh one.

    Returns:
        ``(model, data, history)``: the trained model (best validation epoch of each phase),
        the data provider (for scoring) and the per-epoch history as a DataFrame.
    """
    from bfutils import runlog

    rank, _ = _distributed()
    device = runlog.resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # every rank builds identical initial weights
    model = build_model(cfg, pretrained=cfg.pretrained).to(device)
    kind = FeatureData if cfg.freeze_backbone else PixelData
    same = ("encoder", "pretrained", "input_size", "cache_views", "figure_pairs", "seed",
            "train_stages")  # fmt: skip
    if not isinstance(data, kind) or any(getattr(data.cfg, k) != getattr(cfg, k) for k in same):
        data = kind(model, manifest, images, eval_sets, cfg, device, rank=rank)
    else:
        data.restart(manifest, images, cfg, rank=rank)
    data.val_labels = eval_sets["val"][0]["label"].to_numpy()
    log, first, start, state = [], 0, 0, None
    if resume:
        saved = torch.load(resume, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        first, start, log, state = saved["phase"], saved["epoch"], saved["log"], saved
    for k, phase in enumerate(phases(cfg)):
        if k < first:
            continue
        run_phase(model, data, phase, cfg, k, log, val_metric=val_metric, ckpt=checkpoint,
                  start_epoch=start if k == first else 0,
                  state=state if k == first else None, progress=progress)  # fmt: skip
    model.eval()
    return model, data, pd.DataFrame(log)


def predictions(model, data, eval_sets, cfg, name) -> pd.DataFrame:
    """Scores of the validation and test pairs, one row per pair."""
    score = registry.scoring(cfg.schedule)
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
        fa, fb = data.eval_reference[split]
        frames.append(
            prediction_frame(table, F.cosine_similarity(fa, fb, dim=1).cpu().numpy(), name)
        )
    return pd.concat(frames, ignore_index=True)


def save_model(model, cfg: TrainConfig, path) -> None:
    """Weights and the config that built them, in one file."""
    torch.save({"config": asdict(cfg), "model": model.state_dict()}, path)


def load_model(path, device="cpu"):
    """Rebuild a model saved by :func:`save_model` (no weights are fetched)."""
    saved = torch.load(path, map_location=device, weights_only=True)
    cfg = TrainConfig(**saved["config"])
    model = build_model(cfg)
    model.load_state_dict(saved["model"])
    return model.to(device).eval(), cfg
