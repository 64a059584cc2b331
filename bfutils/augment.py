# Over 400 lines on purpose: one concept, the catalogue of every alteration family with its recipe.
"""The alteration catalogue: manual figure manipulations that turn one image into a "derived" one.

Each alteration is an explicit recipe, a family name plus the parameters drawn for it
(:class:`Alteration`). Drawing (:func:`sample`) and applying (:func:`apply`) are separate, and
:func:`apply` uses ``torchvision.transforms.v2.functional`` with those explicit parameters and
no global random state. A recorded alteration (``to_json``) therefore re-applies to the same
pixels: pairs can be rebuilt and audited.

Parameters are stored relative to the image (crop box and translation as fractions of the
side, noise sigma as a fraction of 0..255), so a recipe drawn without seeing an image fits any
image size. Images are ``HxWx3 uint8`` numpy arrays in and out, same size.

Warps (``rotate_small``, ``affine``) record a ``fill`` for the area uncovered by the warp:
``"black"`` (constant 0, the tell-tale corners of a naive rotation) or ``"reflect"`` (the image
is mirror-padded first, as a careful manipulator would hide the corners). Both are drawn.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

FAMILIES: tuple[str, ...] = (
    "crop_resize",
    "hflip",
    "vflip",
    "rotate90",
    "rotate_small",
    "color_jitter",
    "grayscale",
    "intensity",
    "gaussian_blur",
    "gaussian_noise",
    "affine",
    "jpeg",
    "compose",
)

_DIHEDRAL = frozenset({"hflip", "vflip", "rotate90"})

RANGES: dict[str, dict] = {
    # Intervals are (weakest, strongest); ``strength`` picks the weak or strong half. ``k``,
    # ``fill``, ``n_steps`` and ``families`` list options instead; ``aspect`` is a shape interval.
    # Deviations from identity (brightness 0.1 means factor 0.9 or 1.1) have a lower bound > 0
    # so that no draw is a silent no-op. Override per call with ``sample(..., ranges=...)``.
    "crop_resize": {"area": (0.9, 0.5), "aspect": (3 / 4, 4 / 3)},  # aspect: shape, not strength
    "hflip": {},
    "vflip": {},
    "rotate90": {"k": (1, 2, 3)},  # quarter turns counter-clockwise
    "rotate_small": {"degrees": (3.0, 25.0), "fill": ("black", "reflect")},  # either sign
    "color_jitter": {
        "brightness": (0.05, 0.3),
        "contrast": (0.05, 0.3),
        "saturation": (0.1, 0.5),
        "hue": (0.01, 0.08),
    },
    "grayscale": {},
    "intensity": {"brightness": (0.1, 0.35), "contrast": (0.1, 0.4), "gamma": (1.15, 1.8)},
    "gaussian_blur": {"sigma": (0.6, 2.0)},  # pixels
    "gaussian_noise": {"sigma": (0.02, 0.08)},  # fraction of the 0..255 range
    "affine": {
        "degrees": (0.0, 15.0),
        "translate": (0.0, 0.1),
        "scale": (0.05, 0.2),
        "shear": (0.0, 10.0),
        "fill": ("black", "reflect"),
    },
    "jpeg": {"quality": (75, 20)},
    "compose": {"n_steps": (2, 3), "families": FAMILIES[:-1]},
}

_PARAM_KEYS: dict[str, tuple[str, ...]] = {
    "crop_resize": ("area", "aspect", "x", "y"),
    "hflip": (),
    "vflip": (),
    "rotate90": ("k",),
    "rotate_small": ("angle", "fill"),
    "color_jitter": ("brightness", "contrast", "saturation", "hue"),
    "grayscale": (),
    "intensity": ("brightness", "contrast", "gamma"),
    "gaussian_blur": ("sigma",),
    "gaussian_noise": ("sigma", "seed"),
    "affine": ("angle", "translate", "scale", "shear", "fill"),
    "jpeg": ("quality",),
    "compose": ("steps",),
}

_STRENGTHS = {"mild": (0.0, 0.5), "default": (0.0, 1.0), "strong": (0.5, 1.0)}
_MIN_SIDE = 16  # the blur kernel's reflect padding needs a few pixels on each side


def _check_family(family: str, *, allow_compose: bool = True) -> None:
    valid = FAMILIES if allow_compose else FAMILIES[:-1]
    if family not in valid:
        raise ValueError(f"unknown alteration family {family!r}; valid names: {', '.join(valid)}")


@dataclass(frozen=True)
class Alteration:
    """One recorded alteration: a family name and the parameters drawn for it.

    Attributes:
        family: One of :data:`FAMILIES`.
        params: JSON-serialisable parameters; for ``compose``, ``{"steps": [{"family": ...,
            "params": ...}, ...]}`` applied in order.
    """

    family: str
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_family(self.family)
        if not isinstance(self.params, dict):
            raise ValueError(f"Alteration params must be a dict, got {type(self.params).__name__}")
        missing = [k for k in _PARAM_KEYS[self.family] if k not in self.params]
        if missing:
            raise ValueError(f"alteration {self.family!r} is missing params {missing}")
        for step in self.steps:  # validates each part
            _check_family(step.family, allow_compose=False)

    def __hash__(self) -> int:  # params is a dict, so hash the canonical JSON instead
        return hash(self.to_json())

    @property
    def steps(self) -> list[Alteration]:
        """The parts of a ``compose`` alteration, in order (empty for other families)."""
        if self.family != "compose":
            return []
        return [Alteration(family=s["family"], params=s["params"]) for s in self.params["steps"]]

    def to_json(self) -> str:
        """Serialise to a canonical JSON string (sorted keys)."""
        return json.dumps({"family": self.family, "params": self.params}, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> Alteration:
        """Rebuild an alteration written by :meth:`to_json`."""
        try:
            data = json.loads(s)
        except (TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"Alteration.from_json: not valid JSON ({err})") from None
        if not isinstance(data, dict) or set(data) != {"family", "params"}:
            raise ValueError("Alteration.from_json: expected an object with 'family' and 'params'")
        return cls(family=data["family"], params=data["params"])


# --------------------------------------------------------------------------- drawing parameters


def _draw(rng: np.random.Generator, span: Sequence[float], window: tuple[float, float]) -> float:
    """A value between span's weakest and strongest end, at a fraction drawn from ``window``."""
    weak, strong = span
    return float(weak + rng.uniform(*window) * (strong - weak))


def _sign(rng: np.random.Generator) -> int:
    return 1 if rng.random() < 0.5 else -1


def _r(x: float) -> float:
    return round(float(x), 4)  # readable JSON; the rounded value is what gets applied


def _choice(rng: np.random.Generator, options: Sequence) -> object:
    value = options[int(rng.integers(len(options)))]
    return value.item() if isinstance(value, np.generic) else value


def _sample_crop(rng, r, w) -> dict:
    area = _draw(rng, r["area"], w)
    # Relative aspect (crop w/W over crop h/H) limited so the box fits: sqrt(area*aspect) <= 1.
    lo, hi = max(r["aspect"][0], area), min(r["aspect"][1], 1.0 / area)
    aspect = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return {"area": _r(area), "aspect": _r(aspect), "x": _r(rng.random()), "y": _r(rng.random())}


def _sample_color(rng, r, w) -> dict:
    return {
        "brightness": _r(1 + _sign(rng) * _draw(rng, r["brightness"], w)),
        "contrast": _r(1 + _sign(rng) * _draw(rng, r["contrast"], w)),
        "saturation": _r(1 + _sign(rng) * _draw(rng, r["saturation"], w)),
        "hue": _r(_sign(rng) * _draw(rng, r["hue"], w)),
    }


def _sample_intensity(rng, r, w) -> dict:
    return {
        "brightness": _r(1 + _sign(rng) * _draw(rng, r["brightness"], w)),
        "contrast": _r(1 + _sign(rng) * _draw(rng, r["contrast"], w)),
        "gamma": _r(_draw(rng, r["gamma"], w) ** _sign(rng)),
    }


def _sample_affine(rng, r, w) -> dict:
    return {
        "angle": _r(_sign(rng) * _draw(rng, r["degrees"], w)),
        "translate": [_r(_sign(rng) * _draw(rng, r["translate"], w)) for _ in range(2)],
        "scale": _r(1 + _sign(rng) * _draw(rng, r["scale"], w)),
        "shear": [_r(_sign(rng) * _draw(rng, r["shear"], w)) for _ in range(2)],
        "fill": _choice(rng, r["fill"]),
    }


_SAMPLERS: dict[str, Callable[[np.random.Generator, dict, tuple], dict]] = {
    "crop_resize": _sample_crop,
    "hflip": lambda rng, r, w: {},
    "vflip": lambda rng, r, w: {},
    "rotate90": lambda rng, r, w: {"k": int(_choice(rng, r["k"]))},
    "rotate_small": lambda rng, r, w: {
        "angle": _r(_sign(rng) * _draw(rng, r["degrees"], w)),
        "fill": _choice(rng, r["fill"]),
    },
    "color_jitter": _sample_color,
    "grayscale": lambda rng, r, w: {},
    "intensity": _sample_intensity,
    "gaussian_blur": lambda rng, r, w: {"sigma": _r(_draw(rng, r["sigma"], w))},
    "gaussian_noise": lambda rng, r, w: {
        "sigma": _r(_draw(rng, r["sigma"], w)),
        "seed": int(rng.integers(2**31)),
    },
    "affine": _sample_affine,
    "jpeg": lambda rng, r, w: {"quality": round(_draw(rng, r["quality"], w))},
}


def _sample_compose(rng, r, strength, ranges) -> dict:
    pool = list(r["families"])
    for name in pool:
        _check_family(name, allow_compose=False)
    n = int(_choice(rng, r["n_steps"]))
    if len(pool) < n:
        raise ValueError(f"compose needs at least {n} families to choose from, got {pool}")
    # hflip + vflip + rotate90(k=2) is the identity, so never draw all three dihedral families.
    while True:
        parts = [pool[i] for i in rng.permutation(len(pool))[:n]]
        if not _DIHEDRAL <= set(parts):
            break
    steps = [sample(p, rng, strength=strength, ranges=ranges) for p in parts]
    return {"steps": [{"family": s.family, "params": s.params} for s in steps]}


def sample(
    family: str,
    rng: np.random.Generator,
    *,
    strength: str = "default",
    ranges: Mapping[str, Mapping] | None = None,
) -> Alteration:
    """Draw the parameters of one alteration of the given family.

    Args:
        family: One of :data:`FAMILIES`.
        rng: The only source of randomness; the same seed gives the same alteration.
        strength: ``"mild"`` (weak half of each interval), ``"default"`` (whole interval) or
            ``"strong"`` (strong half). Choices (``k``, ``fill``, ...) are not affected.
        ranges: Per-family overrides merged over :data:`RANGES`, e.g.
            ``{"jpeg": {"quality": (50, 30)}, "compose": {"families": ("hflip", "jpeg")}}``.

    Returns:
        The alteration, ready for :func:`apply`.

    Raises:
        ValueError: If the family or strength is unknown.
    """
    _check_family(family)
    if strength not in _STRENGTHS:
        raise ValueError(f"unknown strength {strength!r}; valid: {', '.join(_STRENGTHS)}")
    r = {**RANGES[family], **((ranges or {}).get(family) or {})}
    if family == "compose":
        params = _sample_compose(rng, r, strength=strength, ranges=ranges)
    else:
        params = _SAMPLERS[family](rng, r, _STRENGTHS[strength])
    return Alteration(family=family, params=params)


def random_alteration(
    rng: np.random.Generator,
    families: Sequence[str] | None = None,
    *,
    strength: str = "default",
    ranges: Mapping[str, Mapping] | None = None,
) -> Alteration:
    """Draw a family uniformly from ``families`` (default: all of :data:`FAMILIES`), then its
    parameters with :func:`sample`."""
    pool = FAMILIES if families is None else tuple(families)
    if not pool:
        raise ValueError("random_alteration: families is empty")
    for name in pool:
        _check_family(name)
    return sample(_choice(rng, pool), rng, strength=strength, ranges=ranges)


# --------------------------------------------------------------------------- applying


def _reflect_margins(h: int, w: int, *, angle, translate, scale, shear) -> tuple[int, int]:
    """Rows and columns of padding after which an affine warp reads only padded pixels.

    The output box (grown by the translation) is mapped back through the inverse linear part;
    all sign conventions for angle and shear are tried, so the bound does not depend on
    torchvision's internal ones.
    """
    hx, hy = w / 2 + abs(translate[0]), h / 2 + abs(translate[1])
    corners = np.array([[hx, hy], [hx, -hy], [-hx, hy], [-hx, -hy]])
    need = np.zeros(2)
    for a in (angle, -angle):
        for sx in (shear[0], -shear[0]):
            for sy in (shear[1], -shear[1]):
                ca, sa = math.cos(math.radians(a)), math.sin(math.radians(a))
                linear = (
                    scale
                    * np.array([[ca, -sa], [sa, ca]])
                    @ np.array([[1.0, 0.0], [-math.tan(math.radians(sy)), 1.0]])
                    @ np.array([[1.0, -math.tan(math.radians(sx))], [0.0, 1.0]])
                )
                src = corners @ np.linalg.inv(linear).T
                need = np.maximum(need, np.abs(src).max(axis=0))
    margin = 2  # bilinear interpolation reads one pixel beyond; one more for rounding
    return max(0, math.ceil(need[1] - h / 2)) + margin, max(0, math.ceil(need[0] - w / 2)) + margin


def _warp(
    img: torch.Tensor, *, fill: str, angle, translate=(0.0, 0.0), scale=1.0, shear=(0.0, 0.0)
):
    h, w = img.shape[-2:]
    shift = [translate[0] * w, translate[1] * h]
    kwargs = {"angle": angle, "translate": shift, "scale": scale, "shear": list(shear)}
    if fill == "black":
        return F.affine(img, **kwargs, interpolation=InterpolationMode.BILINEAR, fill=0.0)
    if fill != "reflect":
        raise ValueError(f"unknown fill {fill!r}; valid: black, reflect")
    ph, pw = _reflect_margins(h, w, **kwargs)
    # np.pad, unlike torch's reflect pad, allows padding wider than the image.
    padded = torch.from_numpy(np.pad(img.numpy(), ((0, 0), (ph, ph), (pw, pw)), mode="reflect"))
    out = F.affine(padded, **kwargs, interpolation=InterpolationMode.BILINEAR)
    return out[:, ph : ph + h, pw : pw + w]


def _crop_resize(img: torch.Tensor, p: dict) -> torch.Tensor:
    h, w = img.shape[-2:]
    ch = min(h, max(1, round(h * math.sqrt(p["area"] / p["aspect"]))))
    cw = min(w, max(1, round(w * math.sqrt(p["area"] * p["aspect"]))))
    top, left = round(p["y"] * (h - ch)), round(p["x"] * (w - cw))
    return F.resized_crop(img, top=top, left=left, height=ch, width=cw, size=[h, w], antialias=True)


def _rotate90(img: torch.Tensor, p: dict) -> torch.Tensor:
    out = torch.rot90(img, k=p["k"], dims=(-2, -1))  # exact, no interpolation
    if out.shape != img.shape:  # odd k on a non-square image: squeeze back to HxW
        out = F.resize(out, size=list(img.shape[-2:]), antialias=True)
    return out


def _color_jitter(img: torch.Tensor, p: dict) -> torch.Tensor:
    # Fixed order (torchvision's ColorJitter shuffles it) so the recipe fully determines pixels.
    img = F.adjust_brightness(img, brightness_factor=p["brightness"])
    img = F.adjust_contrast(img, contrast_factor=p["contrast"])
    img = F.adjust_saturation(img, saturation_factor=p["saturation"])
    return F.adjust_hue(img, hue_factor=p["hue"])


def _intensity(img: torch.Tensor, p: dict) -> torch.Tensor:
    img = F.adjust_brightness(img, brightness_factor=p["brightness"])
    img = F.adjust_contrast(img, contrast_factor=p["contrast"])
    return F.adjust_gamma(img, gamma=p["gamma"])


def _blur(img: torch.Tensor, p: dict) -> torch.Tensor:
    size = 2 * math.ceil(3 * p["sigma"]) + 1  # +-3 sigma holds 99.7% of the kernel's mass
    return F.gaussian_blur(img, kernel_size=[size, size], sigma=[p["sigma"], p["sigma"]])


def _noise(img: torch.Tensor, p: dict) -> torch.Tensor:
    # Not F.gaussian_noise: it draws from torch's global RNG; the recorded seed must decide.
    gen = np.random.default_rng(p["seed"])
    noise = gen.standard_normal(size=img.shape, dtype=np.float32) * np.float32(p["sigma"] * 255)
    return torch.from_numpy(np.clip(np.rint(img.numpy() + noise), 0, 255).astype(np.uint8))


def _jpeg(img: torch.Tensor, p: dict) -> torch.Tensor:
    if hasattr(F, "jpeg"):  # torchvision >= 0.20
        return F.jpeg(img.contiguous(), quality=p["quality"])
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=p["quality"])
    return torch.from_numpy(np.asarray(Image.open(buf).convert("RGB"))).permute(2, 0, 1)


_APPLIERS: dict[str, Callable[[torch.Tensor, dict], torch.Tensor]] = {
    "crop_resize": _crop_resize,
    "hflip": lambda img, p: F.horizontal_flip(img),
    "vflip": lambda img, p: F.vertical_flip(img),
    "rotate90": _rotate90,
    "rotate_small": lambda img, p: _warp(img, fill=p["fill"], angle=p["angle"]),
    "color_jitter": _color_jitter,
    "grayscale": lambda img, p: F.rgb_to_grayscale(img, num_output_channels=3),
    "intensity": _intensity,
    "gaussian_blur": _blur,
    "gaussian_noise": _noise,
    "affine": lambda img, p: _warp(img, **p),
    "jpeg": _jpeg,
}


def _check_image(image: object, *, name: str = "image") -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array (HxWx3 uint8), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must have shape HxWx3 (RGB), got {image.shape}")
    if min(image.shape[:2]) < _MIN_SIDE:
        raise ValueError(f"{name} sides must be >= {_MIN_SIDE} pixels, got {image.shape[:2]}")


def apply(image: np.ndarray, alteration: Alteration) -> np.ndarray:
    """Apply a recorded alteration; deterministic (no global random state is read).

    Args:
        image: ``HxWx3 uint8`` RGB array, both sides at least 16 pixels. Not modified.
        alteration: From :func:`sample`, :func:`random_alteration` or ``Alteration.from_json``.

    Returns:
        A new ``HxWx3 uint8`` array of the same size.

    Raises:
        ValueError: If the image or the alteration is malformed.
    """
    _check_image(image)
    if not isinstance(alteration, Alteration):
        raise ValueError(f"alteration must be an Alteration, got {type(alteration).__name__}")
    # One copy to CHW; it also makes read-only inputs (e.g. from PIL) safe for torch.
    img = torch.from_numpy(image.transpose(2, 0, 1).copy())
    for step in alteration.steps or [alteration]:
        img = _APPLIERS[step.family](img, step.params)
    return np.ascontiguousarray(img.permute(1, 2, 0).numpy())


def apply_batch(images: np.ndarray, alterations: Sequence[Alteration]) -> np.ndarray:
    """Apply ``alterations[i]`` to ``images[i]`` for an ``NxHxWx3 uint8`` batch."""
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        shape = getattr(images, "shape", type(images).__name__)
        raise ValueError(f"images must be an NxHxWx3 uint8 array, got {shape}")
    if len(images) != len(alterations):
        raise ValueError(f"got {len(images)} images but {len(alterations)} alterations")
    return np.stack([apply(img, alt) for img, alt in zip(images, alterations, strict=True)])


def view_pair(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    families: Sequence[str] | None = None,
    strength: str = "default",
) -> tuple[np.ndarray, np.ndarray, Alteration, Alteration]:
    """Two independently altered views of one image, for Barlow Twins / SimCLR training.

    Returns:
        ``(A1(image), A2(image), A1, A2)`` with ``A1``, ``A2`` drawn by :func:`random_alteration`.
    """
    alt1 = random_alteration(rng, families, strength=strength)
    alt2 = random_alteration(rng, families, strength=strength)
    return apply(image, alt1), apply(image, alt2), alt1, alt2


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def describe(alteration: Alteration) -> str:
    """A short human label, e.g. ``rotate_small(angle=12.3, fill=black)`` or
    ``compose(jpeg+hflip)``."""
    if alteration.family == "compose":
        return "compose(" + "+".join(s.family for s in alteration.steps) + ")"
    shown = [f"{k}={_fmt(v)}" for k, v in alteration.params.items() if k != "seed"]
    return f"{alteration.family}({', '.join(shown)})" if shown else alteration.family
