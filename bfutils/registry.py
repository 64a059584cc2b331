"""The models of the study, declared once: training schedules, how each scores, table order.

Every other module reads these names from here: :mod:`bfutils.train` (valid schedules and the
score of a schedule's last phase), :mod:`bfutils.baselines` (which learned baselines notebook 04
trains), :mod:`bfutils.retrieval` (how a saved model scores a query against a reference) and
:mod:`bfutils.report` (row order of the tables).

* ``PAIR_MODELS``: the paper's two training schemes of the Siamese pair model (notebook 03).
* ``LEARNED_BASELINES``: the baselines trained by the same loop on the same budget (notebook 04),
  in the order notebook 04 trains them.
* ``SCORING``: ``head`` (sigmoid of the pair head: a probability) or ``cosine`` (cosine similarity
  of the projector embeddings, for the self-supervised baselines that train no head).
* ``DISPLAY_ORDER``: the row order of every table and figure legend; names not in it (a new
  method) go last, alphabetically.
"""

from __future__ import annotations

from collections.abc import Iterable

PAIR_MODELS = ("sequential", "joint")
LEARNED_BASELINES = ("barlow_twins", "simclr", "bce_only")
SCHEDULES = PAIR_MODELS + LEARNED_BASELINES
"""Every schedule :class:`bfutils.train.TrainConfig` accepts."""

SCORING = {
    "sequential": "head",
    "joint": "head",
    "bce_only": "head",
    "barlow_twins": "cosine",
    "simclr": "cosine",
}

DISPLAY_ORDER = (
    "joint", "sequential", "fused", "barlow_twins", "simclr", "bce_only", "clip",
    "imagenet_cnn", "phash", "dhash", "whash", "ahash", "keypoints",
)  # fmt: skip


def check_schedule(name: str, allowed: Iterable[str] = SCHEDULES) -> str:
    """Return ``name`` if it is one of ``allowed``; otherwise raise naming the choices.

    Args:
        name: a schedule name, e.g. a notebook parameter.
        allowed: the accepted names (default every schedule; notebook 03 passes
            :data:`PAIR_MODELS`).

    Returns:
        ``name``, unchanged.

    Raises:
        ValueError: ``name`` is not in ``allowed``.
    """
    allowed = tuple(allowed)
    if name not in allowed:
        raise ValueError(f"schedule must be one of {allowed}, got {name!r}")
    return name


def scoring(schedule: str) -> str:
    """How a model trained with ``schedule`` scores a pair: ``"head"`` or ``"cosine"``."""
    return SCORING[check_schedule(schedule)]


def ordered(names: Iterable[str]) -> list[str]:
    """``names`` in :data:`DISPLAY_ORDER`; unknown names last, alphabetically."""
    rank = {name: k for k, name in enumerate(DISPLAY_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))
