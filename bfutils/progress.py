"""Progress bars a person can follow, in JupyterLab and in a batch run of the pipeline.

In JupyterLab the bars are notebook widgets (``tqdm.auto``). Under :mod:`bfutils.pipeline`,
papermill runs each notebook in a kernel whose output only reaches the executed notebook, so
the console would show nothing for minutes while a model trains. The pipeline therefore sets
``BFUTILS_PROGRESS=console``, and the bars are written to the terminal the kernel was started
from: ipykernel captures file descriptors 1 and 2 for the notebook but keeps a copy of the
original descriptor, which ``sys.stderr.fileno()`` returns inside a kernel.
"""

from __future__ import annotations

import io
import os
import sys
from functools import lru_cache

from tqdm import std
from tqdm.auto import tqdm as _auto_tqdm

ENV = "BFUTILS_PROGRESS"
"""``console``: bars go to the launching terminal; ``off``: no bars; unset: tqdm.auto."""


@lru_cache(maxsize=1)
def _console() -> io.TextIOBase:
    """The terminal stream: the kernel's saved original stderr, else this process's stderr."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        return sys.__stderr__
    return open(fd, "w", buffering=1, encoding="utf-8", errors="replace")


def bar(iterable=None, **kwargs):
    """A tqdm bar that reaches the person running the work (see the module docstring).

    Args:
        iterable: what to iterate over, as for ``tqdm``.
        **kwargs: tqdm options (``desc``, ``total``, ``disable``, ``unit``, ...).

    Returns:
        A tqdm instance.
    """
    mode = os.environ.get(ENV, "")
    if mode == "off":
        kwargs["disable"] = True
    if mode == "console":
        kwargs.setdefault("mininterval", 2.0)  # a terminal or CI log, not a widget
        return std.tqdm(iterable, file=_console(), dynamic_ncols=True, **kwargs)
    return _auto_tqdm(iterable, **kwargs)
