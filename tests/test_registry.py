"""The one list of schedules and models: consistent with itself and with its readers."""

import pytest

from bfutils import baselines, classic, registry


def test_schedules_are_pair_models_then_learned_baselines():
    assert registry.PAIR_MODELS == ("sequential", "joint")
    assert registry.LEARNED_BASELINES == ("barlow_twins", "simclr", "bce_only")
    assert registry.SCHEDULES == registry.PAIR_MODELS + registry.LEARNED_BASELINES
    assert baselines.LEARNED == registry.LEARNED_BASELINES


def test_every_schedule_scores_one_way():
    assert set(registry.SCORING) == set(registry.SCHEDULES)
    assert {s for s in registry.SCHEDULES if registry.scoring(s) == "cosine"} == {
        "barlow_twins", "simclr"
    }  # fmt: skip
    assert all(registry.scoring(s) == "head" for s in registry.PAIR_MODELS)
    with pytest.raises(ValueError, match="schedule must be one of"):
        registry.scoring("clip")


def test_display_order_lists_every_model_once():
    order = registry.DISPLAY_ORDER
    assert len(set(order)) == len(order)
    assert set(registry.SCHEDULES) | set(classic.HASH_METHODS) <= set(order)
    assert order[:3] == ("joint", "sequential", "fused")


def test_ordered_puts_unknown_names_last_alphabetically():
    names = ["zeta", "phash", "alpha", "simclr", "joint", "keypoints"]
    assert registry.ordered(names) == ["joint", "simclr", "phash", "keypoints", "alpha", "zeta"]


def test_check_schedule_names_the_choices():
    assert registry.check_schedule("joint", allowed=registry.PAIR_MODELS) == "joint"
    with pytest.raises(ValueError, match=r"\('sequential', 'joint'\), got 'simclr'"):
        registry.check_schedule("simclr", allowed=registry.PAIR_MODELS)
