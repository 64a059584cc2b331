"""Shared test set-up: offline hub, the tests folder importable for helpers, real data."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import tests_helpers  # noqa: E402  (needs the tests folder on sys.path, set just above)


@pytest.fixture(scope="session")
def shared_data():
    """Factory of real-data folders: ``shared_data("dsb2018") -> Path``.

    Names are the folders of ``../shared/data`` (``dsb2018``, ``bccd``, ``haxby2001-subset``).
    The folder comes from ``BFUTILS_SHARED_DATA`` or ``../shared/data``; else from the project's
    downloaders (cached in ``data/raw``) when the internet answers; else the test is skipped
    with a reason that says how to get the data. Under ``CI=true`` a missing folder fails.
    """
    return tests_helpers.real_data
