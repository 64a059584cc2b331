# Over 400 lines: one concept, what a figure does to a panel, and the reuse families.
"""Figure-realistic alterations: what happens to an image on its way into a published figure.

:mod:`bfutils.augment` holds the editing catalogue (flips, warps, blur, ...). This module adds
what a figure does to a panel on top of any edit, and the reuse families that only make sense
for whole panels (issue 9, item 1):

- **presentation**: a panel is resized to 40-400 px, sometimes shrunk to 32-128 px and blown up
  again (a thumbnail pasted back), annotated (letters, arrows, scale bars, coloured boxes, lane
  numbers) and saved as PNG or as JPEG at quality 50-90, sometimes twice;
- **reuse families**: ``crop`` (60-95 % of the source), ``partial`` (30-60 %), ``overlap`` (two
  crops of one source sharing 30-70 % of the query), ``rot90`` (90/180/270 degrees, optionally
  mirrored), ``flip``, ``contrast`` (brightness, contrast, gamma, levels), ``colour``
  (grayscale, false colour, channel swap), ``blur``, ``noise``, ``affine``, ``jpeg`` (strong,
  twice), ``rescale`` (through 32-64 px) and ``compose`` (two or three of these).

Every function takes its randomness from an explicit ``numpy.random.Generator`` and returns
the parameters it drew as JSON-ready dicts, so a panel can be audited. Images are ``HxWx3``
uint8 arrays; boxes are ``[x0, y0, x1, y1]`` pixel edges (``x1``, ``y1`` exclusive).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bfutils import augment

FAMILIES: tuple[str, ...] = (
    "crop",
    "partial",
    "overlap",
    "rot90",
    "flip",
    "contrast",
    "colour",
    "blur",
    "noise",
    "affine",
    "jpeg",
    "rescale",
    "compose",
)
AREA = {"crop": (0.60, 0.95), "partial": (0.30, 0.60)}
"""Area of the source that a ``crop`` or ``partial`` query shows (fraction)."""
OVERLAP = (0.30, 0.70)
"""Share of an ``overlap`` query that the source panel also shows."""
PANEL_SIDE = (40, 400)
"""Long side of a panel in pixels (drawn log-uniformly)."""
_COMPOSE_POOL = ("rot90", "flip", "contrast", "colour", "blur", "noise", "affine", "jpeg")
_COLOURS = ((255, 255, 255), (0, 0, 0), (255, 230, 0), (255, 40, 40), (40, 220, 40), (0, 200, 255))
_CMAPS = ("magma", "viridis", "hot", "inferno", "gray_r")
_TINTS = {"green": (0, 1, 0), "red": (1, 0, 0), "magenta": (1, 0, 1), "cyan": (0, 1, 1)}


# --------------------------------------------------------------------------- geometry


def sample_box(rng: np.random.Generator, width: int, height: int, area: float) -> list[int]:
    """A box covering ``area`` of a ``width x height`` image, aspect within 3:4 to 4:3.

    Args:
        rng: Source of randomness.
        width: Image width in pixels.
        height: Image height in pixels.
        area: Wanted fraction of the image area, in (0, 1].

    Returns:
        ``[x0, y0, x1, y1]`` inside the image.
    """
    lo, hi = max(3 / 4, area), min(4 / 3, 1 / area)  # keeps both sides within the image
    aspect = math.exp(rng.uniform(math.log(lo), math.log(hi))) if hi > lo else 1.0
    bw = min(width, max(8, round(width * math.sqrt(area * aspect))))
    bh = min(height, max(8, round(height * math.sqrt(area / aspect))))
    x0, y0 = int(rng.integers(0, width - bw + 1)), int(rng.integers(0, height - bh + 1))
    return [x0, y0, x0 + bw, y0 + bh]


def box_area(box: list[int]) -> int:
    """Pixel area of a box (0 when empty)."""
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def intersect(a: list[int], b: list[int]) -> list[int]:
    """Intersection of two boxes (may be empty: check :func:`box_area`)."""
    return [max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])]


def sample_overlap(
    rng: np.random.Generator, width: int, height: int, tries: int = 200
) -> tuple[list[int], list[int]]:
    """Two crops of one image where the second shares 30-70 % of its area with the first.

    Args:
        rng: Source of randomness.
        width: Image width in pixels.
        height: Image height in pixels.
        tries: Attempts before settling for the closest draw.

    Returns:
        ``(box_a, box_b)``; ``box_area(intersect(a, b)) / box_area(b)`` lies in :data:`OVERLAP`
        unless the image is too small to allow it.
    """
    target = rng.uniform(*OVERLAP)
    best, best_err = None, math.inf
    for _ in range(tries):
        a = sample_box(rng, width, height, area=rng.uniform(0.35, 0.6))
        b = sample_box(rng, width, height, area=rng.uniform(0.35, 0.6))
        share = box_area(intersect(a, b)) / box_area(b)
        err = abs(share - target)
        if err < best_err:
            best, best_err = (a, b), err
        if OVERLAP[0] <= share <= OVERLAP[1] and err < 0.05:
            break
    return best


def scale_box(box: list[int], src: tuple[int, int], dst: tuple[int, int]) -> list[int]:
    """Map a box from a ``src = (width, height)`` image onto the same image resized to ``dst``."""
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    x0, y0 = math.floor(box[0] * sx), math.floor(box[1] * sy)
    x1, y1 = math.ceil(box[2] * sx), math.ceil(box[3] * sy)
    return [max(0, x0), max(0, y0), min(dst[0], x1), min(dst[1], y1)]


def panel_size(rng: np.random.Generator, width: int, height: int) -> tuple[int, int]:
    """A panel size for content of ``width x height``: long side log-uniform in 40-400 px.

    The aspect is kept; the short side is at least 20 px.
    """
    long_side = round(math.exp(rng.uniform(*np.log(PANEL_SIDE))))
    scale = long_side / max(width, height)
    return max(20, round(width * scale)), max(20, round(height * scale))


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size = (width, height)``, anti-aliased (Lanczos) down, bicubic up."""
    h, w = image.shape[:2]
    if (w, h) == tuple(size):
        return image
    shrink = size[0] < w or size[1] < h
    method = Image.Resampling.LANCZOS if shrink else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(image).resize(tuple(size), resample=method))


# --------------------------------------------------------------------------- presentation


def rescale_through(image: np.ndarray, side: int) -> np.ndarray:
    """Shrink so the long side is ``side`` px (if larger), then resize back to the input size."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    small = resize(image, (max(4, round(w * scale)), max(4, round(h * scale))))
    return resize(small, (w, h))


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` and decode again (PIL, 4:2:0 chroma as most tools do)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buf).convert("RGB"))


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, int(size)))


def _text(draw: ImageDraw.ImageDraw, xy, text: str, size: int, colour, boxed: bool) -> None:
    font = _font(size)
    if boxed:  # labels on a solid patch, as journals often print them
        bg = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
        draw.rectangle(draw.textbbox(xy, text, font=font), fill=bg)
    draw.text(xy, text, fill=colour, font=font)


def _arrow(draw: ImageDraw.ImageDraw, tip, angle: float, length: float, width: int, colour):
    tail = (tip[0] - length * math.cos(angle), tip[1] - length * math.sin(angle))
    draw.line([tail, tip], fill=colour, width=width)
    head = max(4.0, length / 3)
    wings = [
        (tip[0] - head * math.cos(angle + s * 0.45), tip[1] - head * math.sin(angle + s * 0.45))
        for s in (-1, 1)
    ]
    draw.polygon([tip, *wings], fill=colour)


def sample_annotations(rng: np.random.Generator, width: int, height: int) -> list[dict]:
    """Draw 1-3 overlays for a ``width x height`` panel (see :func:`annotate`).

    Returns:
        A list of JSON-ready dicts, each with a ``kind``: ``label``, ``arrow``, ``scale_bar``,
        ``box`` or ``lanes``.
    """
    kinds = ("label", "arrow", "scale_bar", "box", "lanes")
    chosen = rng.choice(len(kinds), size=int(rng.integers(1, 4)), replace=False)
    small = min(width, height)
    out = []
    for k in sorted(int(i) for i in chosen):
        colour = [int(c) for c in _COLOURS[int(rng.integers(len(_COLOURS)))]]
        kind = kinds[k]
        if kind == "label":
            text = "ABCDEFGHabcdefgh"[int(rng.integers(16))] + ("'" if rng.random() < 0.2 else "")
            corner = [int(rng.integers(2)), int(rng.integers(2))]
            size = round(small * rng.uniform(0.12, 0.25))
            out.append(
                {
                    "kind": kind,
                    "text": text,
                    "corner": corner,
                    "size": size,
                    "colour": colour,
                    "boxed": bool(rng.random() < 0.4),
                }
            )
        elif kind == "arrow":
            tip = [round(rng.uniform(0.2, 0.8) * width), round(rng.uniform(0.2, 0.8) * height)]
            out.append(
                {
                    "kind": kind,
                    "tip": tip,
                    "angle": round(rng.uniform(0, 2 * math.pi), 3),
                    "length": round(small * rng.uniform(0.15, 0.35)),
                    "width": int(rng.integers(1, 4)),
                    "colour": colour,
                }
            )
        elif kind == "scale_bar":
            out.append(
                {
                    "kind": kind,
                    "length": round(width * rng.uniform(0.15, 0.3)),
                    "thick": int(rng.integers(2, 5)),
                    "right": bool(rng.random() < 0.7),
                    "text": ["", "10 um", "50 um", "100 nm"][int(rng.integers(4))],
                    "colour": colour,
                }
            )
        elif kind == "box":
            bw, bh = round(width * rng.uniform(0.2, 0.45)), round(height * rng.uniform(0.2, 0.45))
            x0, y0 = int(rng.integers(0, width - bw + 1)), int(rng.integers(0, height - bh + 1))
            out.append(
                {
                    "kind": kind,
                    "box": [x0, y0, x0 + bw, y0 + bh],
                    "width": int(rng.integers(1, 3)),
                    "colour": colour,
                }
            )
        else:
            out.append(
                {
                    "kind": kind,
                    "n": int(rng.integers(3, 9)),
                    "size": round(small * rng.uniform(0.08, 0.16)),
                    "colour": colour,
                }
            )
    return out


def annotate(image: np.ndarray, annotations: list[dict]) -> np.ndarray:
    """Draw recorded overlays (from :func:`sample_annotations`) over a copy of ``image``."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    for a in annotations:
        colour = tuple(a["colour"])
        if a["kind"] == "label":
            pad = max(1, a["size"] // 5)
            x = pad if a["corner"][0] == 0 else w - pad - a["size"]
            y = pad if a["corner"][1] == 0 else h - pad - a["size"] - pad
            _text(draw, (x, y), a["text"], a["size"], colour, boxed=a["boxed"])
        elif a["kind"] == "arrow":
            _arrow(draw, tuple(a["tip"]), a["angle"], a["length"], a["width"], colour)
        elif a["kind"] == "scale_bar":
            margin = max(2, w // 20)
            x0 = w - margin - a["length"] if a["right"] else margin
            y1 = h - margin
            draw.rectangle([x0, y1 - a["thick"], x0 + a["length"], y1], fill=colour)
            if a["text"]:
                size = max(8, a["length"] // 3)
                _text(draw, (x0, y1 - a["thick"] - size - 2), a["text"], size, colour, False)
        elif a["kind"] == "box":
            draw.rectangle(a["box"], outline=colour, width=a["width"])
        else:  # lane numbers spread along the top edge, as on a blot
            for i in range(a["n"]):
                x = round((i + 0.3) * w / a["n"])
                _text(draw, (x, 1), str(i + 1), a["size"], colour, boxed=False)
    return np.asarray(canvas)


# --------------------------------------------------------------------------- reuse families


def to_gray(image: np.ndarray) -> np.ndarray:
    """ITU-R 601 luminance as uint8 ``HxW``."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(image.astype(np.float32) @ weights), 0, 255).astype(np.uint8)


def false_colour(image: np.ndarray, scheme: str) -> np.ndarray:
    """Luminance shown through a tint (``green``, ``red``, ...) or a matplotlib colour map."""
    gray = to_gray(image)
    if scheme in _TINTS:
        return (gray[..., None] * np.array(_TINTS[scheme], dtype=np.uint8)).astype(np.uint8)
    import matplotlib

    lut = (matplotlib.colormaps[scheme](np.arange(256))[:, :3] * 255).round().astype(np.uint8)
    return lut[gray]


def levels(image: np.ndarray, low: float, high: float, gamma: float) -> np.ndarray:
    """Stretch the ``low``-``high`` percentiles to 0-255 and apply ``gamma``, like a re-export."""
    lo, hi = np.percentile(image, [low, high])
    x = np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1.0), 0, 1) ** gamma
    return np.rint(x * 255).astype(np.uint8)


def sample_edit(family: str, rng: np.random.Generator) -> list[dict]:
    """Draw the pixel edits of one family (the region families ``crop``, ``partial``,
    ``overlap`` draw none here: their edit is the choice of region).

    Args:
        family: One of :data:`FAMILIES`.
        rng: Source of randomness.

    Returns:
        Steps for :func:`apply_edit`, each ``{"op": ..., **params}``.
    """
    if family in ("crop", "partial", "overlap"):
        return []
    if family == "compose":
        parts = rng.choice(len(_COMPOSE_POOL), size=int(rng.integers(2, 4)), replace=False)
        return [
            s for i in sorted(int(p) for p in parts) for s in sample_edit(_COMPOSE_POOL[i], rng)
        ]
    if family == "rot90":
        flip = ["", "h", "v"][int(rng.integers(3))]
        return [{"op": "rot90", "k": int(rng.integers(1, 4)), "flip": flip}]
    if family == "flip":
        return [{"op": "augment", **_alt("hflip" if rng.random() < 0.5 else "vflip", rng)}]
    if family == "contrast":
        pick = int(rng.integers(3))
        if pick == 2:
            return [
                {
                    "op": "levels",
                    "low": round(rng.uniform(0.5, 10), 2),
                    "high": round(rng.uniform(90, 99.8), 2),
                    "gamma": round(math.exp(rng.uniform(-0.5, 0.5)), 3),
                }
            ]
        return [{"op": "augment", **_alt(("intensity", "color_jitter")[pick], rng, "strong")}]
    if family == "colour":
        pick = ("gray", "tint", "cmap", "swap")[int(rng.integers(4))]
        if pick == "tint":
            return [{"op": "false_colour", "scheme": str(rng.choice(list(_TINTS)))}]
        if pick == "cmap":
            return [{"op": "false_colour", "scheme": str(rng.choice(_CMAPS))}]
        if pick == "swap":
            order = [[2, 1, 0], [1, 0, 2], [0, 2, 1], [2, 0, 1]][int(rng.integers(4))]
            return [{"op": "swap", "order": order}]
        return [{"op": "gray"}]
    if family == "blur":
        return [{"op": "augment", **_alt("gaussian_blur", rng, ranges={"sigma": (0.8, 2.5)})}]
    if family == "noise":
        return [{"op": "augment", **_alt("gaussian_noise", rng)}]
    if family == "affine":
        return [{"op": "augment", **_alt("affine" if rng.random() < 0.6 else "rotate_small", rng)}]
    if family == "jpeg":
        return [{"op": "jpeg", "quality": int(rng.integers(20, 51))} for _ in range(2)]
    if family == "rescale":
        return [{"op": "rescale", "side": int(rng.integers(32, 65))}]
    raise ValueError(f"unknown figure family {family!r}; valid: {', '.join(FAMILIES)}")


def _alt(name: str, rng, strength: str = "default", ranges: dict | None = None) -> dict:
    alt = augment.sample(name, rng, strength=strength, ranges={name: ranges} if ranges else None)
    return {"family": alt.family, "params": alt.params}


def apply_edit(image: np.ndarray, steps: list[dict]) -> np.ndarray:
    """Apply recorded steps from :func:`sample_edit` in order (``rot90`` may swap the sides)."""
    for s in steps:
        op = s["op"]
        if op == "rot90":
            image = np.rot90(image, k=s["k"])
            image = (
                image[:, ::-1] if s["flip"] == "h" else image[::-1] if s["flip"] == "v" else image
            )
            image = np.ascontiguousarray(image)
        elif op == "augment":
            image = augment.apply(image, augment.Alteration(s["family"], s["params"]))
        elif op == "levels":
            image = levels(image, s["low"], s["high"], s["gamma"])
        elif op == "false_colour":
            image = false_colour(image, s["scheme"])
        elif op == "gray":
            image = np.repeat(to_gray(image)[..., None], 3, axis=-1)
        elif op == "swap":
            image = np.ascontiguousarray(image[..., s["order"]])
        elif op == "jpeg":
            image = jpeg_roundtrip(image, s["quality"])
        elif op == "rescale":
            image = rescale_through(image, s["side"])
        else:
            raise ValueError(f"unknown edit op {op!r}")
    return image
