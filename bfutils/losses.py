"""Losses for the Siamese model: Barlow Twins, NT-Xent (SimCLR baseline) and pair BCE.

Pure functions of tensors: no distributed calls, no module state. Multi-GPU training would
gather embeddings at the loop before calling them (the official Barlow Twins code all-reduces
inside the loss; we keep that opt-in and outside).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_views(z1: Tensor, z2: Tensor, name: str) -> None:
    """Raise a clear ValueError unless z1, z2 are matching (N, D) batches with N >= 2."""
    if not isinstance(z1, Tensor) or not isinstance(z2, Tensor):
        raise TypeError(f"{name}: z1 and z2 must be torch tensors, got {type(z1)} and {type(z2)}")
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"{name}: z1 and z2 must both have shape (N, D); got {tuple(z1.shape)} "
            f"and {tuple(z2.shape)}"
        )
    if z1.shape[0] < 2:
        raise ValueError(
            f"{name}: needs a batch of at least N=2 samples (statistics are taken over the "
            f"batch); got N={z1.shape[0]}"
        )


def _batch_standardise(z: Tensor, eps: float) -> Tensor:
    """Per-feature (z - mean) / sqrt(var + eps) over the batch, biased var.

    This is exactly ``nn.BatchNorm1d(D, affine=False)`` in training mode, which is what the
    official Barlow Twins code applies before the cross-correlation.
    """
    mean = z.mean(dim=0, keepdim=True)
    var = z.var(dim=0, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps)


def cross_correlation(z1: Tensor, z2: Tensor, eps: float = 1e-5) -> Tensor:
    """Empirical cross-correlation matrix of two batch-standardised views.

    C_ij = sum_b zn1_bi * zn2_bj / N, with zn the per-feature standardised embeddings.

    Args:
        z1: First view's embeddings, shape (N, D).
        z2: Second view's embeddings, shape (N, D).
        eps: Added to the per-feature variance before the square root.

    Returns:
        C with shape (D, D); C_ii is the correlation of feature i across the two views.
    """
    _check_views(z1, z2, name="cross_correlation")
    n = z1.shape[0]
    zn1 = _batch_standardise(z1.float(), eps=eps)
    zn2 = _batch_standardise(z2.float(), eps=eps)
    return zn1.T @ zn2 / n


def barlow_twins_terms(z1: Tensor, z2: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """The two unweighted terms of the Barlow Twins loss, for logging.

    Args:
        z1: First view's embeddings, shape (N, D).
        z2: Second view's embeddings, shape (N, D).
        eps: Added to the per-feature variance before the square root.

    Returns:
        (invariance, redundancy): scalars sum_i (1 - C_ii)^2 and sum_{i != j} C_ij^2.
    """
    c = cross_correlation(z1, z2, eps=eps)
    diag = torch.diagonal(c)
    invariance = (1.0 - diag).pow(2).sum()
    redundancy = c.pow(2).sum() - diag.pow(2).sum()
    return invariance, redundancy


def barlow_twins_loss(
    z1: Tensor, z2: Tensor, redundancy_weight: float = 5e-3, eps: float = 1e-5
) -> Tensor:
    """Barlow Twins loss (Zbontar et al., 2021, eq. 1).

    L_BT = sum_i (1 - C_ii)^2 + lambda * sum_i sum_{j != i} C_ij^2,

    where C (D, D) is the cross-correlation of the two views' embeddings, each feature
    standardised over the batch: C_ij = sum_b zn1_bi zn2_bj / N. Because of that
    standardisation the loss is invariant to a per-feature affine map z -> a * z + b, a > 0
    (up to ``eps``).

    Args:
        z1: Projector output for the first augmented view, shape (N, D), N >= 2.
        z2: Projector output for the second view of the same images, shape (N, D).
        redundancy_weight: lambda. The paper used 0.0051 for D = 8192; 5e-3 is the common
            default (lightly, solo-learn) for smaller D.
        eps: Added to the per-feature variance before the square root (BatchNorm's eps).

    Returns:
        Scalar loss tensor.
    """
    invariance, redundancy = barlow_twins_terms(z1, z2, eps=eps)
    return invariance + redundancy_weight * redundancy


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """NT-Xent, the normalised-temperature cross-entropy of SimCLR (Chen et al., 2020, eq. 1).

    With the 2N embeddings u = l2-normalise(cat(z1, z2)), s_ik = u_i . u_k / t and p(i) the
    other view of sample i,

        L = 1 / (2N) * sum_i -log( exp(s_i,p(i)) / sum_{k != i} exp(s_ik) ).

    Args:
        z1: First view's embeddings, shape (N, D), N >= 2.
        z2: Second view's embeddings, shape (N, D); row b is the positive of z1's row b.
        temperature: t > 0.

    Returns:
        Scalar loss tensor.
    """
    _check_views(z1, z2, name="nt_xent_loss")
    if temperature <= 0:
        raise ValueError(f"nt_xent_loss: temperature must be > 0, got {temperature}")
    n = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = u @ u.T / temperature
    # A sample is never its own negative: drop the diagonal from the softmax.
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), float("-inf"))
    positives = torch.arange(2 * n, device=sim.device).roll(n)
    return F.cross_entropy(sim, positives)


def pair_bce_loss(logits: Tensor, labels: Tensor, pos_weight: float | None = None) -> Tensor:
    """Binary cross-entropy of the pair head, mean over pairs.

    L = -1/N sum_b [w y_b log sigma(s_b) + (1 - y_b) log(1 - sigma(s_b))].

    Args:
        logits: Raw head outputs s, shape (N,).
        labels: 1 if the second image was derived from the first, else 0; shape (N,),
            any numeric or bool dtype.
        pos_weight: Optional weight w of positive pairs (for unbalanced pair sets).

    Returns:
        Scalar loss tensor.
    """
    if logits.shape != labels.shape:
        raise ValueError(
            f"pair_bce_loss: logits and labels must have the same shape; got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    weight = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
    return F.binary_cross_entropy_with_logits(
        logits.float(), labels.to(device=logits.device, dtype=torch.float32), pos_weight=weight
    )
