"""Source ``graphics``: drawn western blots, DNA gels and flow-cytometry dot plots.

Real reuse in published figures is often not a micrograph: loading-control blots, gel lanes and
dot plots are among the panels most often duplicated (Bik et al. 2016), and they are the hard
case for a finder. Bands and dots carry few keypoints, and two blots of one experiment (or two
samples stained alike) look the same at a glance while being distinct pictures. No such images
ship in a package under a licence we can use, so this source *draws* them, deterministically,
from the record alone (no files, works offline).

A group is one experiment: one lane layout and band pattern (blots, gels), or one mixture of
cell populations (dot plots). Its members are replicates: the same design with their own band
amounts, band shapes, film grain, dust and, for dot plots, their own events. So members of a
group are the hard negatives (distinct images that look alike), and a planted copy of one
member shares its exact noise, dust and band edges, as a real duplicated panel does.

These are drawings, not photographs of membranes: they test whether the finder's evidence
holds on this kind of content, not how common it is in real figures.
"""

from __future__ import annotations

import re
import zlib

import cv2
import numpy as np

from bfutils.data.schema import row

KINDS = ("blot", "gel", "dotplot")
_MODALITY = {"blot": "western_blot", "gel": "dna_gel", "dotplot": "flow_cytometry"}
_PATH = re.compile(r"graphics:(blot|gel|dotplot):g(\d+):r(\d+)$")


def records(
    root=None, *, on_error="raise", groups: int = 16, replicates: int = 4, first_group: int = 0
) -> list[dict]:
    """Rows of ``groups`` experiments of each kind, ``replicates`` images each.

    Experiments are numbered from ``first_group``; each number draws its own design, so two
    ranges that do not overlap share no picture (the calibration set takes its graphics from
    16 on, the planted benchmark from 0).
    """
    del on_error  # drawn, never read: nothing can fail to load
    if root is not None:
        raise ValueError("the graphics source is drawn, not read, and takes no root")
    if groups < 1 or replicates < 1:
        raise ValueError(f"groups and replicates must be >= 1, got {groups}, {replicates}")
    out = []
    for kind in KINDS:
        for g in range(first_group, first_group + groups):
            for r in range(replicates):
                out.append(
                    row(
                        image_id=f"graphics:{kind}:g{g:02d}:r{r}",
                        group=f"graphics:{kind}:g{g:02d}",
                        modality=_MODALITY[kind],
                        source="graphics",
                        source_name=kind,
                        stack=f"r{r}",
                        stack_kind="replicate",
                        axis="",
                        path=f"graphics:{kind}:g{g:02d}:r{r}",
                    )
                )
    return out


def pixels(record) -> np.ndarray:
    """RGB uint8 pixels of one record (drawn from its path; the same path, the same pixels)."""
    match = _PATH.match(record.path)
    if not match:
        raise ValueError(f"not a graphics path: {record.path!r}")
    kind, group, replicate = match[1], int(match[2]), int(match[3])
    design = np.random.default_rng(_seed(kind, group))
    own = np.random.default_rng(_seed(kind, group, replicate))
    if kind == "dotplot":
        return dot_plot(design, own)
    return blot(design, own, gel=kind == "gel")


def _seed(*parts) -> int:
    return zlib.crc32(":".join(map(str, parts)).encode())


def _smooth_noise(rng, shape, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field."""
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return field / (field.std() + 1e-6)


def blot(design: np.random.Generator, own: np.random.Generator, gel: bool = False) -> np.ndarray:
    """A western blot strip (dark bands on a light membrane) or a DNA gel (bright on dark).

    ``design`` draws what the replicates of one experiment share: lane count and pitch, band
    rows, which lanes carry a band and roughly how much. ``own`` draws what one picture has
    alone: band amounts (+-25 %), band shapes, smile, film grain, background blotches, dust.
    """
    lanes = int(design.integers(4, 13))
    pitch = int(design.integers(22, 38))
    rows = int(design.integers(1, 3)) if not gel else int(design.integers(3, 7))
    height = int(design.integers(48, 90)) if not gel else int(design.integers(120, 200))
    width = lanes * pitch + int(design.integers(10, 30))
    band_h = design.uniform(4, 10, size=rows)
    row_y = np.sort(design.uniform(0.2, 0.8, size=rows)) * height
    loading_control = design.random() < 0.4  # the same amount in every lane, as for actin
    amount = np.ones((rows, lanes)) if loading_control else design.uniform(0.1, 1, (rows, lanes))
    amount *= own.uniform(0.75, 1.25, size=amount.shape)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    signal = np.zeros((height, width), np.float32)
    x0 = (width - lanes * pitch) / 2
    smile = own.uniform(-3, 3)
    for r in range(rows):
        for lane in range(lanes):
            cx = x0 + (lane + 0.5) * pitch + own.normal(0, 1)
            half = pitch * own.uniform(0.28, 0.36)
            cy = row_y[r] + own.normal(0, 1) + smile * ((xx - cx) / half) ** 2
            across = np.exp(-(np.abs((xx - cx) / half) ** 4))  # flat-topped lane profile
            along = np.exp(-0.5 * ((yy - cy) / (band_h[r] * own.uniform(0.8, 1.2) / 2)) ** 2)
            signal += float(amount[r, lane]) * across * along
    signal *= np.clip(1 + 0.2 * _smooth_noise(own, signal.shape, 2), 0.2, None)  # band edges
    signal = 1 - np.exp(-2.2 * signal)  # film saturates
    background = 0.06 * _smooth_noise(own, signal.shape, 12) + 0.03 * yy / height
    grain = own.normal(0, 0.025, signal.shape).astype(np.float32)
    if gel:
        grey = 0.08 + 0.85 * signal + background + grain
    else:
        grey = 0.88 - 0.75 * signal - background + grain
    for _ in range(int(own.integers(2, 7))):  # dust and specks, the analyst's fingerprint
        cx, cy = own.uniform(0, width), own.uniform(0, height)
        speck = np.exp(-0.5 * ((xx - cx) ** 2 + (yy - cy) ** 2) / own.uniform(0.4, 1.5) ** 2)
        grey += (0.4 if gel else -0.4) * speck
    grey = np.clip(grey, 0, 1)
    image = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    if gel and design.random() < 0.5:  # a stain photographed through a filter
        image[..., 2] = (image[..., 2] * 0.55).astype(np.uint8)
        image[..., 0] = (image[..., 0] * 0.85).astype(np.uint8)
    return image


def dot_plot(design: np.random.Generator, own: np.random.Generator) -> np.ndarray:
    """A flow-cytometry dot plot: events of a few populations, axes, gate and percentages.

    ``design`` draws the populations (centres, spreads, shares on log axes), the colouring
    (black dots or a density colour map) and the gate; ``own`` draws this sample: every event,
    a small shift of each population and its share.
    """
    side = int(design.integers(180, 300))
    margin = int(side * 0.16)
    n_pop = int(design.integers(2, 5))
    centres = design.uniform(0.15, 0.85, size=(n_pop, 2))
    spreads = design.uniform(0.03, 0.12, size=(n_pop, 2))
    shares = design.dirichlet(np.ones(n_pop))
    density_colour = design.random() < 0.6
    gate = design.uniform(0.35, 0.65, size=2)
    events = int(own.integers(3000, 12000))
    counts = own.multinomial(events, own.dirichlet(shares * 200))
    points = [
        own.normal(c + own.normal(0, 0.015, 2), s, size=(k, 2))
        for c, s, k in zip(centres, spreads, counts, strict=True)
    ]
    xy = np.clip(np.concatenate(points), 0, 0.999)
    plot = side - 2 * margin
    px = (margin + xy[:, 0] * plot).astype(int)
    py = (side - margin - xy[:, 1] * plot).astype(int)
    image = np.full((side, side, 3), 255, np.uint8)
    if density_colour:
        hist = np.zeros((side, side), np.float32)
        np.add.at(hist, (py, px), 1)
        density = cv2.GaussianBlur(hist, (0, 0), 3)[py, px]
        level = np.clip(255 * np.log1p(density) / np.log1p(density.max()), 0, 255)
        colours = cv2.applyColorMap(level.astype(np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
        image[py, px] = colours
    else:
        image[py, px] = 0
    ink = (0, 0, 0)
    cv2.rectangle(image, (margin, margin), (side - margin, side - margin), ink, 1)
    for t in np.linspace(0, 1, 5):
        x = int(margin + t * plot)
        y = int(side - margin - t * plot)
        cv2.line(image, (x, side - margin), (x, side - margin + 4), ink, 1)
        cv2.line(image, (margin - 4, y), (margin, y), ink, 1)
    gx, gy = int(margin + gate[0] * plot), int(side - margin - gate[1] * plot)
    cv2.line(image, (gx, margin), (gx, side - margin), ink, 1)
    cv2.line(image, (margin, gy), (side - margin, gy), ink, 1)
    quadrants = [
        (xy[:, 0] < gate[0]) & (xy[:, 1] >= gate[1]),
        (xy[:, 0] >= gate[0]) & (xy[:, 1] >= gate[1]),
        (xy[:, 0] < gate[0]) & (xy[:, 1] < gate[1]),
        (xy[:, 0] >= gate[0]) & (xy[:, 1] < gate[1]),
    ]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, side / 700
    spots = [
        (margin + 3, margin + 14),
        (side - margin - 40, margin + 14),
        (margin + 3, side - margin - 5),
        (side - margin - 40, side - margin - 5),
    ]
    for q, spot in zip(quadrants, spots, strict=True):
        cv2.putText(image, f"{100 * q.mean():.1f}", spot, font, scale, ink, 1, cv2.LINE_AA)
    markers = design.choice(
        ["CD4", "CD8", "CD3", "CD19", "CD11b", "Annexin V", "PI", "GFP"], size=2, replace=False
    )
    cv2.putText(
        image, str(markers[0]), (side // 2 - 15, side - 6), font, scale, ink, 1, cv2.LINE_AA
    )
    cv2.putText(image, str(markers[1]), (2, margin - 6), font, scale, ink, 1, cv2.LINE_AA)
    return image
