"""Small synthetic data shared by tests (slab-like groups of random images)."""

import numpy as np
import pandas as pd


def synthetic(n_groups=12, per_group=6, size=32, seed=0):
    """A manifest of slab-like groups (slices 2 mm apart, two tissues) and random images."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for k in range(per_group):
            rows.append({
                "image_id": f"syn:{g}:{k}", "group": f"syn:g{g}", "source": "syn",
                "modality": "mri" if g % 2 else "tiles",
                "stack": "T1" if k % 2 else "gm", "stack_kind": "tissue", "axis": "axial",
                "pos": float(g * 20 + 2 * (k // 2)), "pos2": 0.0, "unit": "mm",
            })  # fmt: skip
    images = rng.integers(0, 256, size=(len(rows), size, size, 3), dtype=np.uint8)
    return pd.DataFrame(rows), images
