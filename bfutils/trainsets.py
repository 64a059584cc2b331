"""Training data providers: cached encoder features or altered pixels, batches of both kinds.

:class:`FeatureData` (frozen encoder) encodes ``cache_views`` altered views of every training
image once, so a step draws cached features; :class:`PixelData` alters and resizes pixels every
step (the encoder is trained). Both draw view pairs for the self-supervised terms and labelled
pairs for BCE from the same :class:`bfutils.pairs.PairSampler`, and score validation pairs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bfutils import augment, models, pairs, planted
from bfutils.progress import bar as tqdm


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


class _Streams:
    """The random streams of a data provider: its pair sampler and its view generator."""

    def restart(self, manifest, images, cfg, rank=0):
        """Start the streams afresh from ``cfg.seed``, under ``cfg``.

        :func:`train` calls this when it reuses a provider, so a run's batches depend on its
        own seed and settings (e.g. ``figure_share``) only, not on the runs that used the
        provider before.
        """
        self.cfg = cfg
        self.sampler = pairs.PairSampler(
            manifest, images, seed=cfg.seed + 1000 * rank,
            config=pairs.PairConfig(positive_share=cfg.positive_share, hard_share=cfg.hard_share),
        )  # fmt: skip
        self.rng = np.random.default_rng([cfg.seed, 11, rank])


class FeatureData(_Streams):
    """Cached frozen-encoder features: altered views of training images, evaluation pairs.

    View 0 of every training image is the original, views 1..V-1 random alterations from
    the catalogue. Positive training pairs are two different views of one image; negatives
    are views of two images chosen by the pair sampler (easy and hard alike).

    With ``cfg.figure_pairs`` > 0, ``figure_pairs`` figure-realistic (source, query) panel
    pairs of every training image are rendered and encoded once as well
    (:func:`bfutils.planted.training_pairs`), and a ``cfg.figure_share`` of the labelled pairs
    and view pairs are drawn from them instead, with the same labels and partners.
    """

    def __init__(self, model, manifest, images, eval_sets, cfg, device, rank=0):
        self.device, self.cfg = device, cfg
        rng = np.random.default_rng([cfg.seed, 7])
        self.restart(manifest, images, cfg, rank=rank)
        train_idx = self.sampler.index
        self.pos = {int(g): k for k, g in enumerate(train_idx)}
        views = [images[train_idx]]
        for _ in tqdm(range(cfg.cache_views - 1), desc="alter views"):
            alts = [augment.random_alteration(rng) for _ in train_idx]
            views.append(augment.apply_batch(images[train_idx], alts))
        enc = lambda x: self._encode(model, x)  # noqa: E731
        self.views = torch.stack([enc(v) for v in tqdm(views, desc="encode views")])
        self.eval = {s: (enc(a), enc(b)) for s, (_, a, b) in eval_sets.items()}
        self.eval_reference = self.eval  # the untrained encoder's features of the eval pairs
        if cfg.train_stages:
            tail = model.trunk_and_tail()[1]
            with torch.no_grad():
                self.eval_reference = {
                    s: (_batched(tail, a), _batched(tail, b)) for s, (a, b) in self.eval.items()
                }
        self.figure = None
        if cfg.figure_pairs:
            src, qry = planted.training_pairs(
                images[train_idx], cfg.figure_pairs, np.random.default_rng([cfg.seed, 13])
            )
            self.figure = (
                torch.stack([enc(v) for v in tqdm(src, desc="encode figure sources")]),
                torch.stack([enc(v) for v in tqdm(qry, desc="encode figure queries")]),
            )  # each (figure_pairs, n_train, dim)

    def features(self, model, f):
        """Encoder features of a batch: the cached ones themselves, or with
        ``cfg.train_stages`` the cached trunk maps through the encoder's (trained) last stages."""
        return model.trunk_and_tail()[1](f) if self.cfg.train_stages else f

    def _encode(self, model, x):
        net = model.trunk_and_tail()[0] if self.cfg.train_stages else model.encoder
        f = models.encode_images(
            net, model_norm(model), x, size=self.cfg.input_size,
            batch_size=128, device=self.device, progress=False,
        )  # fmt: skip
        return torch.from_numpy(f).to(self.device)

    def embed(self, model, f):
        """Projector output of cached features."""
        return model.projector(self.features(model, f))

    def view_batch(self, n):
        """Two different views of ``n`` training images (with figure pairs: a share of them
        the source and query panels of one figure-realistic pair)."""
        i = self.rng.integers(self.views.shape[1], size=n)
        v1 = self.rng.integers(self.views.shape[0], size=n)
        v2 = (v1 + self.rng.integers(1, self.views.shape[0], size=n)) % self.views.shape[0]
        return self._with_figures(self.views[v1, i], self.views[v2, i], i, i, np.ones(n, bool))

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
        xa, xb = self._with_figures(self.views[va, ia], self.views[vb, ib], ia, ib, same)
        return xa, xb, y

    def _with_figures(self, xa, xb, ia, ib, same):
        """Swap a ``figure_share`` of the rows for figure panels: for one image (``same``) the
        source and query of one of its figure pairs, for two images the source panel of one
        against a query panel of the other. Unchanged without figure pairs."""
        if self.figure is None:
            return xa, xb
        n, k_max = len(ia), self.figure[0].shape[0]
        fig = torch.from_numpy(self.rng.random(n) < self.cfg.figure_share).to(xa.device)
        fig = fig.view(-1, *[1] * (xa.ndim - 1))  # rows of features or of trunk maps
        k = self.rng.integers(k_max, size=n)
        kb = k if same.all() else np.where(same, k, self.rng.integers(k_max, size=n))
        xa = torch.where(fig, self.figure[0][k, ia], xa)
        xb = torch.where(fig, self.figure[1][kb, ib], xb)
        return xa, xb

    def eval_logits_or_cos(self, model, split, score):
        fa, fb = self.eval[split]
        return _score_batches(model, fa, fb, score, embed=self.embed, features=self.features)


class PixelData(_Streams):
    """Freshly altered pixels every step; the encoder runs (and may train)."""

    def __init__(self, model, manifest, images, eval_sets, cfg, device, rank=0):
        self.device, self.cfg, self.images = device, cfg, images
        self.restart(manifest, images, cfg, rank=rank)
        self.eval = {s: (a, b) for s, (_, a, b) in eval_sets.items()}

    def embed(self, model, x):
        return model.embed(x)

    def features(self, model, x):
        """Encoder features of a batch of pixels (trained along when the encoder is)."""
        return model.features(x)

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
            out.append(
                _score_batches(model, xa, xb, score, embed=self.embed, features=self.features)
            )
        return np.concatenate(out)


def _batched(net, x, batch=512):
    return torch.cat([net(x[k : k + batch]) for k in range(0, len(x), batch)])


def model_norm(model) -> tuple:
    return (tuple(model.mean.flatten().tolist()), tuple(model.std.flatten().tolist()))


def _score_batches(model, xa, xb, score, embed, features):
    # restore every module's own mode afterwards: a plain model.train() would put a frozen
    # projector (sequential phase 2) back in train mode and let its BatchNorm statistics drift
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            if score == "cosine":
                s = F.cosine_similarity(embed(model, xa), embed(model, xb), dim=1)
            else:
                s = torch.sigmoid(
                    model.forward_from_features(features(model, xa), features(model, xb))
                )
    finally:
        for module, mode in modes.items():
            module.training = mode
    return s.float().cpu().numpy()


def _draw(data, phase, n) -> dict:
    batch = {}
    if {"bt", "ntxent"} & set(phase.losses):
        batch["v1"], batch["v2"] = data.view_batch(n)
    if "bce" in phase.losses:
        batch["a"], batch["b"], batch["y"] = data.pair_batch(n)
    return batch
