"""Perceptual hashes of a panel in its 8 orientations: a third descriptor for the finder.

The planted figure benchmark showed where keypoints and the SSCD copy descriptor both fail and
imagededup's PHash does not: whole-panel copies that were blurred, noised or re-contrasted
(partner at rank 1, seed-0 benchmark: PHash 0.79 / 0.79 / 0.93 on blur / noise / contrast,
the finder 0.64 / 0.71 / 0.86). PHash (the DCT hash of imagededup, 64 bits, Apache-2.0) keeps
the coarse layout of brightness, which survives those edits; it does not survive a flip or a
quarter turn (0.00 and 0.07 on those families), so each image is hashed in all 8 orientations
of the square (the dihedral group: 4 rotations, each mirrored or not).

The image is reduced once to imagededup's 32 x 32 grey input (``preprocess_image``: Lanczos,
then grey) and the orientations are taken of that array, so the 8 hashes cost one resize.
"""

from __future__ import annotations

import numpy as np

BITS = 64
ORIENTATIONS = 8


def _orientations(small: np.ndarray) -> list[np.ndarray]:
    """The 8 dihedral orientations of a square array; index 0 is the identity."""
    out = []
    for flip in (False, True):
        base = small[:, ::-1] if flip else small
        out += [np.ascontiguousarray(np.rot90(base, k)) for k in range(4)]
    return out


def hashes(image: np.ndarray) -> np.ndarray:
    """The PHash of an RGB (or grey) uint8 image in its 8 orientations.

    Returns:
        uint8 (8, 8): one 64-bit hash per orientation, packed as 8 bytes (row 0: as given).
    """
    from imagededup.methods import PHash
    from imagededup.utils.image_utils import preprocess_image

    small = preprocess_image(image, target_size=(32, 32), grayscale=True)
    hasher = PHash(verbose=False)
    return np.stack([
        np.frombuffer(bytes.fromhex(hasher.encode_image(image_array=v)), dtype=np.uint8)
        for v in _orientations(small)
    ])  # fmt: skip


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def similarity(ha: np.ndarray, hb: np.ndarray) -> float:
    """1 - (Hamming distance / 64) of the best orientation, the same in either order.

    The identity hash of each image is compared with every orientation of the other, and the
    better direction is kept: ``similarity(a, b) == similarity(b, a)`` by construction.
    """
    d_ab = _POPCOUNT[np.bitwise_xor(ha, hb[0][None])].sum(axis=1).min()
    d_ba = _POPCOUNT[np.bitwise_xor(hb, ha[0][None])].sum(axis=1).min()
    return 1.0 - float(min(d_ab, d_ba)) / BITS
