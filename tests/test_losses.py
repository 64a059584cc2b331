"""Losses against naive loop implementations of the papers' formulas, plus invariances."""

import math

import pytest
import torch

from bfutils.losses import (
    barlow_twins_loss,
    barlow_twins_terms,
    cross_correlation,
    nt_xent_loss,
    pair_bce_loss,
)


def naive_barlow_twins(z1, z2, lam, eps=1e-5):
    """Zbontar et al. eq. 1 with explicit loops over features and samples."""
    n, d = z1.shape
    cols = []
    for z in (z1.tolist(), z2.tolist()):
        std = []
        for i in range(d):
            mean = sum(z[b][i] for b in range(n)) / n
            var = sum((z[b][i] - mean) ** 2 for b in range(n)) / n
            std.append([(z[b][i] - mean) / math.sqrt(var + eps) for b in range(n)])
        cols.append(std)
    a, b_ = cols
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[i][b] * b_[j][b] for b in range(n)) / n
            loss += (1 - c_ij) ** 2 if i == j else lam * c_ij**2
    return loss


def naive_nt_xent(z1, z2, t):
    """SimCLR eq. 1 with explicit loops over the 2N samples."""
    u = [list(map(float, row)) for row in torch.cat([z1, z2]).tolist()]
    u = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in u]
    n2 = len(u)
    half = n2 // 2

    def sim(i, k):
        return sum(p * q for p, q in zip(u[i], u[k], strict=True)) / t

    total = 0.0
    for i in range(n2):
        pos = (i + half) % n2
        denom = sum(math.exp(sim(i, k)) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim(i, pos)) / denom)
    return total / n2


@pytest.fixture
def views():
    gen = torch.Generator().manual_seed(0)
    z1 = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    z2 = z1 + 0.3 * torch.randn(7, 5, generator=gen, dtype=torch.float64)
    return z1, z2


@pytest.mark.parametrize("lam", [0.0, 5e-3, 1.0])
def test_barlow_twins_matches_naive_loops(views, lam):
    z1, z2 = views
    got = barlow_twins_loss(z1, z2, redundancy_weight=lam).item()
    assert got == pytest.approx(naive_barlow_twins(z1, z2, lam), rel=1e-5)


def test_terms_add_up_and_identical_views_have_zero_invariance(views):
    z1, z2 = views
    inv, red = barlow_twins_terms(z1, z2)
    assert (inv + 0.01 * red).item() == pytest.approx(
        barlow_twins_loss(z1, z2, redundancy_weight=0.01).item(), rel=1e-6
    )
    inv_same, _ = barlow_twins_terms(z1, z1)
    assert inv_same.item() < 1e-4  # C_ii = var / (var + eps) ~ 1


def test_cross_correlation_shape_and_range(views):
    z1, z2 = views
    c = cross_correlation(z1, z2)
    assert c.shape == (5, 5)
    assert c.abs().max() <= 1.0 + 1e-6  # Cauchy-Schwarz on standardised columns


def test_barlow_twins_invariant_to_per_feature_affine(views):
    z1, z2 = views
    gen = torch.Generator().manual_seed(1)
    a1, a2 = (torch.rand(5, generator=gen, dtype=torch.float64) * 3 + 0.2 for _ in range(2))
    b1, b2 = (torch.randn(5, generator=gen, dtype=torch.float64) * 10 for _ in range(2))
    base = barlow_twins_loss(z1, z2).item()
    moved = barlow_twins_loss(a1 * z1 + b1, a2 * z2 + b2).item()
    # Not bitwise: eps is added to the rescaled variance. Measured rel. difference ~1e-5.
    assert moved == pytest.approx(base, rel=1e-4)


def test_barlow_twins_falls_with_a_linear_projector():
    torch.manual_seed(0)
    x = torch.randn(128, 16)
    projector = torch.nn.Linear(16, 8)
    opt = torch.optim.Adam(projector.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        v1 = x + 0.3 * torch.randn_like(x)  # two "augmented views" of the same samples
        v2 = x + 0.3 * torch.randn_like(x)
        loss = barlow_twins_loss(projector(v1), projector(v2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_matches_naive_loops(views, t):
    z1, z2 = views
    assert nt_xent_loss(z1, z2, temperature=t).item() == pytest.approx(
        naive_nt_xent(z1, z2, t), rel=1e-5
    )


def test_nt_xent_prefers_aligned_views(views):
    z1, _ = views
    shuffled = z1[torch.tensor([1, 2, 3, 4, 5, 6, 0])]
    assert nt_xent_loss(z1, z1).item() < nt_xent_loss(z1, shuffled).item()


def test_pair_bce_matches_formula():
    logits = torch.tensor([2.0, -1.0, 0.5])
    labels = torch.tensor([1, 0, 0])
    p = torch.sigmoid(logits)
    expected = -(torch.log(p[0]) + torch.log(1 - p[1]) + torch.log(1 - p[2])) / 3
    assert pair_bce_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    weighted = pair_bce_loss(logits, labels.bool(), pos_weight=2.0).item()
    assert weighted == pytest.approx(expected.item() - torch.log(p[0]).item() / 3, rel=1e-6)


@pytest.mark.parametrize("loss", [barlow_twins_loss, nt_xent_loss])
def test_shape_errors_are_clear(loss):
    with pytest.raises(ValueError, match=r"same shape|shape \(N, D\)"):
        loss(torch.randn(4, 8), torch.randn(4, 9))
    with pytest.raises(ValueError, match="shape"):
        loss(torch.randn(4, 8, 1), torch.randn(4, 8, 1))
    with pytest.raises(ValueError, match="at least N=2"):
        loss(torch.randn(1, 8), torch.randn(1, 8))


def test_pair_bce_shape_error():
    with pytest.raises(ValueError, match="logits and labels"):
        pair_bce_loss(torch.randn(4), torch.ones(4, 1))
