"""The training benchmark runs end to end and reports sane numbers (no timing thresholds)."""

import math
import sys

import pytest
import torch

from bfutils import paths

sys.path.insert(0, str(paths.ROOT / "benchmarks"))
import bench_train as bench  # noqa: E402  (benchmarks/ is not a package)

BATCH = 8


@pytest.fixture(scope="module")
def rows():
    # One thread for this fixture only, restored after: on the shared 2-core machine, with other
    # test runs busy, two OpenMP threads wait on each other and the fixture took 44 s, not 7 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return bench.benchmark_train(
            encoder="resnet18", input_size=32, batch_size=BATCH, steps=2, warmup=1,
            image_size=32, cache_views=2, device="cpu",
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def test_every_row_has_throughput_ratio_and_memory(rows):
    names = [r["variant"] for r in rows]
    assert names == ["bare pixel", "ours pixel", "bare frozen pixels", "bare cached", "ours cached"]
    for r in rows:
        for key in ("images_per_s", "ratio", "peak_mb", "ms_per_step"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["variant"], key, r[key])
        assert 0.0 <= r["draw_share"] <= 1.0 and r["step_mb"] >= 0.0


def test_ratio_is_ours_over_bare_of_the_same_path(rows):
    by = {r["variant"]: r for r in rows}
    for bare in ("bare pixel", "bare frozen pixels", "bare cached"):
        assert by[bare]["ratio"] == 1.0 and not by[bare]["ours"]
    for path in ("pixel", "cached"):
        ours, bare = by[f"ours {path}"], by[f"bare {path}"]
        assert ours["ratio"] == pytest.approx(ours["images_per_s"] / bare["images_per_s"])
    assert by["ours cached"]["setup_s"] > 0  # the feature cache is built, and timed apart


def test_a_joint_step_counts_four_images_per_batch_slot(rows):
    # two views of each image for Barlow Twins, both images of each pair for BCE
    for r in rows:
        per_step = r["images_per_s"] * r["ms_per_step"] / 1000
        assert per_step == pytest.approx(4 * BATCH), r["variant"]


def test_table_shows_every_row_and_explains_the_counting(rows):
    table = bench.format_table(rows)
    for r in rows:
        assert r["variant"] in table
    assert "both images of each pair" in table and "caching speedup" in table


def test_synthetic_dataset_is_split_by_group():
    manifest, images = bench.synthetic_dataset(n_groups=8, per_group=4, image_size=24)
    assert images.shape == (32, 24, 24, 3) and images.dtype.name == "uint8"
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert manifest.groupby("group")["split"].nunique().max() == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"batch_size": 1}, "batch_size"), ({"steps": 0}, "steps"),
     ({"cache_views": 1}, "cache_views"), ({"input_size": 4}, "input_size")],
)  # fmt: skip
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench.benchmark_train(**kwargs)


def test_real_without_processed_data_says_what_to_run(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "PROCESSED", tmp_path)
    with pytest.raises(FileNotFoundError, match="01_prepare_data"):
        bench.benchmark_train(real=True, steps=1)


def test_cli_reports_bad_input_without_a_traceback(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["train", "--batch-size", "1"])
    assert exit_info.value.code == 2
    assert "batch_size must be at least 2" in capsys.readouterr().err
