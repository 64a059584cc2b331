"""The records table: its columns, the defaults of a row, and the checks every source shares."""

from __future__ import annotations

import pandas as pd

COLUMNS = (
    "image_id", "group", "modality", "source", "source_name", "stack", "stack_kind",
    "axis", "pos", "pos2", "unit", "path",
)  # fmt: skip

_DEFAULTS = {
    "stack": "",
    "stack_kind": "",
    "axis": "",
    "pos": 0.0,
    "pos2": 0.0,
    "unit": "",
    "path": "",
}


def row(**fields) -> dict:
    """One record, with the optional columns filled with their defaults."""
    return {**_DEFAULTS, **fields}


def frame(rows: list[dict]) -> pd.DataFrame:
    """Records as a DataFrame with the columns of :data:`COLUMNS` and their dtypes."""
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.astype({c: float if c in ("pos", "pos2") else str for c in COLUMNS})


def check_unique(records: pd.DataFrame) -> None:
    """Refuse duplicate image ids (a source loaded twice)."""
    dup = records["image_id"][records["image_id"].duplicated()]
    if len(dup):
        raise ValueError(f"duplicate image ids (a source loaded twice?): {list(dup[:5])}")
