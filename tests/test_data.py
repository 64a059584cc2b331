"""Tests for bfutils.data: records schema, grouping guarantees, images, bad files, downloads."""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import struct
import zipfile
import zlib

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bfutils import data, paths
from bfutils.data import downloads

# Real data (folders of ../shared/data) comes through the shared_data fixture (conftest.py).
HAXBY, DSB, BCCD = "haxby2001-subset", "dsb2018", "bccd"


@pytest.fixture(scope="module")
def embedded() -> pd.DataFrame:
    return data.load_records("embedded")


@pytest.mark.parametrize("name", [HAXBY, DSB, BCCD])
def test_shared_data_present(shared_data, name):
    # CI always has ../shared/data: there the fixture fails loudly on a missing folder;
    # elsewhere it downloads the data or skips, saying how to get it.
    assert shared_data(name).is_dir()


def test_list_sources_and_bad_arguments(tmp_path):
    assert data.list_sources()[0] == "embedded"
    assert set(data.list_sources()) == {
        "embedded",
        "haxby",
        "folder",
        "dsb2018",
        "bccd",
        "graphics",
    }
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        data.load_records("nope")
    with pytest.raises(ValueError, match="on_error"):
        data.load_records("folder", root=tmp_path, on_error="ignore")
    with pytest.raises(ValueError, match="needs root"):
        data.load_records("folder")


# ----------------------------------------------------------------------------- embedded


def test_embedded_counts_columns_and_ids(embedded):
    assert list(embedded.columns) == list(data.COLUMNS)
    assert len(embedded) >= 500
    assert embedded["modality"].nunique() >= 3
    assert embedded["image_id"].is_unique
    assert (embedded["source"] == "embedded").all()
    assert embedded["image_id"].str.startswith("embedded:").all()
    assert embedded["group"].str.startswith("embedded:").all()
    assert {"mri_t1", "mri_gm", "mri_wm", "fmri_epi", "fundus", "histology_ihc"} <= set(
        embedded["modality"]
    )


def test_embedded_mni_groups_hold_all_three_tissues(embedded):
    mni = embedded[embedded["stack_kind"] == "tissue"]
    assert mni.groupby("group")["stack"].apply(set).map(lambda s: s == {"T1", "gm", "wm"}).all()
    # The same slab position exists in every tissue: 'different stack at same pos' negatives.
    per_pos = mni.groupby(["group", "axis", "pos"])["stack"].nunique()
    assert (per_pos == 3).all()


def test_embedded_slab_gap_separates_groups(embedded):
    slices = embedded[embedded["unit"] == "mm"]
    assert len(slices) > 400
    for (_, _, _), part in slices.groupby(["source_name", "stack", "axis"]):
        part = part.sort_values("pos")
        pos, group = part["pos"].to_numpy(), part["group"].to_numpy()
        boundary = group[1:] != group[:-1]
        # Sorted 1-D: the closest pair of different groups is an adjacent pair.
        assert (np.diff(pos)[boundary] >= 6.0 - 1e-6).all()
        assert boundary.sum() >= 1
        # Each group is a contiguous run along the axis (a slab), at most 8 slices.
        assert part.groupby("group").size().max() <= 8


def _tile_boxes(records: pd.DataFrame) -> pd.DataFrame:
    boxes = records["path"].str.extract(r"skimage:(\w+)\[(\d+):(\d+),(\d+):(\d+)\]")
    boxes.columns = ["name", "y0", "y1", "x0", "x1"]
    return pd.concat(
        [records[["group"]], boxes.astype({c: int for c in "y0 y1 x0 x1".split()})], axis=1
    )


def test_embedded_tiles_of_different_groups_do_not_touch(embedded):
    tiles = embedded[embedded["axis"] == "tile"]
    assert len(tiles) >= 50 and (tiles["unit"] == "tile").all()
    boxes = _tile_boxes(tiles)
    assert boxes.notna().all().all()
    for _, part in boxes.groupby("name"):
        for a, b in itertools.combinations(part.itertuples(), 2):
            # Half-open boxes touch when one ends where the other starts.
            apart = a.y1 < b.y0 or b.y1 < a.y0 or a.x1 < b.x0 or b.x1 < a.x0
            overlap = a.y0 < b.y1 and b.y0 < a.y1 and a.x0 < b.x1 and b.x0 < a.x1
            assert not overlap
            assert apart or a.group == b.group
    assert tiles.groupby("group").size().max() <= 4


def test_load_images_embedded_subset(embedded):
    subset = embedded.groupby("source_name").head(3)
    images = data.load_images(subset, 48, progress=False)
    assert images.shape == (len(subset), 48, 48, 3) and images.dtype == np.uint8
    assert (images.reshape(len(subset), -1).std(axis=1) > 2).all()  # none blank
    gray = subset["modality"].str.startswith(("mri", "fmri")).to_numpy()
    assert (images[gray, ..., 0] == images[gray, ..., 2]).all()
    # An image with colour (IHC) keeps it.
    ihc = subset["modality"].eq("histology_ihc").to_numpy()
    assert np.abs(images[ihc, ..., 0].astype(int) - images[ihc, ..., 2]).mean() > 5


def test_records_survive_csv_round_trip(embedded, tmp_path):
    subset = embedded.groupby("source_name").head(2)
    subset.to_csv(tmp_path / "records.csv", index=False)
    back = pd.read_csv(tmp_path / "records.csv", keep_default_na=False)
    before = data.load_images(subset, 24, progress=False)
    np.testing.assert_array_equal(data.load_images(back, 24, progress=False), before)


# ----------------------------------------------------------------------------- haxby


def test_haxby_shared_subset(shared_data):
    records = data.load_records("haxby", root=shared_data(HAXBY))
    # One slice in the shared subset; a few axial slices of the full data nilearn downloads.
    assert len(records) == 12 * 8 * records["pos2"].nunique()
    assert records["group"].nunique() == 12
    assert (records["modality"] == "fmri_bold").all()
    assert (records["unit"] == "block").all() and (records["axis"] == "time").all()
    assert sorted(records["pos"].unique()) == list(range(8))
    labels = records["image_id"].str.split(":").str[4]
    assert set(labels) == {
        "face",
        "house",
        "cat",
        "shoe",
        "bottle",
        "scissors",
        "chair",
        "scrambledpix",
    }
    images = data.load_images(records.head(8), 32, progress=False)
    assert images.shape == (8, 32, 32, 3) and images.max() > 200
    # Slices padded to squares (40x20 in the subset, 64x40 in the full data): black bands.
    assert min(images[:, :4].max(), images[:, :, :4].max()) == 0


def _nifti(path, volumes: np.ndarray, affine=None, tr=2.0):
    img = nib.Nifti1Image(volumes.astype(np.float32), affine if affine is not None else np.eye(4))
    img.header.set_zooms(img.header.get_zooms()[:3] + (tr,))
    img.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)


def _haxby_series(n_volumes=20) -> np.ndarray:
    """Rest = 50, volumes 2-6 = 200 (face), volumes 10-14 = 100 (house)."""
    series = np.full((10, 12, 8, n_volumes), 50.0)
    series[2:8, 2:10, 1:7, 2:7] = 200
    series[2:8, 2:10, 1:7, 10:15] = 100
    return series


def test_haxby_synthetic_openfmri_3d_volumes(tmp_path):
    run1 = tmp_path / "sub001" / "BOLD" / "task001_run001"
    _nifti(run1 / "bold.nii.gz", _haxby_series())
    (run1 / "bold_events.tsv").write_text(
        "onset\tduration\ttrial_type\n4\t10\tface\n20\t10\thouse\n"
    )
    # Run 2 has no tsv: events come from condition_key.txt and the onset files.
    run2 = tmp_path / "sub001" / "BOLD" / "task001_run002"
    flipped = np.diag([-1.0, 1, 1, 1])  # LAS storage must come out in RAS order
    _nifti(run2 / "bold.nii.gz", _haxby_series()[::-1], affine=flipped)
    (tmp_path / "models" / "model001").mkdir(parents=True)
    key = "task001 cond001 face\ntask001 cond002 house\n"
    (tmp_path / "models" / "model001" / "condition_key.txt").write_text(key)
    onsets = tmp_path / "sub001" / "model" / "model001" / "onsets" / "task001_run002"
    onsets.mkdir(parents=True)
    (onsets / "cond001.txt").write_text("4 10 1\n")
    (onsets / "cond002.txt").write_text("20 10 1\n")

    records = data.load_records("haxby", root=tmp_path, slices=3)
    assert len(records) == 2 * 2 * 3  # runs x blocks x axial slices
    assert records["group"].nunique() == 2 and records["pos2"].nunique() == 3
    assert set(records["image_id"].str.split(":").str[4]) == {"face", "house"}
    images = data.load_images(records, 24, progress=False)
    face = records["image_id"].str.contains("face").to_numpy()
    assert images[face].mean() > images[~face].mean() > 0
    # Same block, same slice in both runs -> same pixels once reoriented.
    np.testing.assert_array_equal(images[:6], images[6:])


def test_haxby_nilearn_layout(tmp_path):
    subject = tmp_path / "haxby2001" / "subj1"
    _nifti(subject / "bold.nii.gz", _haxby_series(n_volumes=20)[:, :, :4])
    labels = ["rest"] * 2 + ["face"] * 5 + ["rest"] * 3 + ["house"] * 5 + ["rest"] * 5
    chunks = [0] * 10 + [1] * 10
    table = pd.DataFrame({"labels": labels, "chunks": chunks})
    table.to_csv(subject / "labels.txt", sep=" ", index=False)
    records = data.load_records("haxby", root=tmp_path, slices=2)
    assert sorted(records["group"].unique()) == ["haxby:subj1:run001", "haxby:subj1:run002"]
    assert len(records) == 2 * 2
    assert data.load_images(records, 16, progress=False).shape == (4, 16, 16, 3)


def test_haxby_missing_layout_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs under"):
        data.load_records("haxby", root=tmp_path)


# ----------------------------------------------------------------------------- files


def _save(path, array, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "imgs"
    ramp = np.linspace(0, 4000, 40 * 30).reshape(30, 40).astype(np.uint16)
    _save(root / "a" / "sixteen.tif", ramp)
    pages = [
        Image.fromarray(np.full((20, 20), 500 * (k + 1), np.uint16) + ramp[:20, :20])
        for k in range(3)
    ]
    pages[0].save(root / "a" / "pages.tif", save_all=True, append_images=pages[1:])
    _save(root / "b" / "gray.png", np.tile(np.arange(0, 250, 10, dtype=np.uint8), (10, 1)))
    rgba = np.full((10, 10, 4), 200, np.uint8)
    rgba[..., 3] = 255
    rgba[:, :5, 3] = 0  # left half transparent
    _save(root / "b" / "rgba.png", rgba)
    _save(root / "c" / "photo.jpg", np.full((30, 40, 3), (200, 50, 50), np.uint8))
    (root / "c" / "notes.txt").write_text("not an image extension: ignored")
    return root


def test_folder_source_formats_and_grouping(image_folder):
    records = data.load_records("folder", root=image_folder, modality="test")
    assert len(records) == 7  # the 3-page TIFF gives 3 records
    assert set(records["group"]) == {"folder:imgs/a", "folder:imgs/b", "folder:imgs/c"}
    paged = records[records["axis"] == "page"]
    assert paged["pos"].tolist() == [0.0, 1.0, 2.0] and (paged["unit"] == "page").all()
    assert (records["modality"] == "test").all() and records["image_id"].is_unique
    images = data.load_images(records, 16, progress=False)
    assert images.shape == (7, 16, 16, 3)
    first = data.load_records("folder", root=image_folder, pages="first")
    assert len(first) == 5
    by_file = data.load_records("folder", root=image_folder, group_by="file")
    assert by_file["group"].nunique() == 5
    by_regex = data.load_records("folder", root=image_folder, group_by="regex", pattern=r"^(\w)")
    assert set(by_regex["stack"]) == {"s", "p", "g", "r"}


def test_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match="no image files"):
        data.load_records("folder", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        data.load_records("bccd", root=tmp_path / "missing")


def test_folder_bad_grouping_options(image_folder):
    with pytest.raises(ValueError, match="capture group"):
        data.load_records("folder", root=image_folder, group_by="regex", pattern="x")
    with pytest.raises(ValueError, match="does not match pattern"):
        data.load_records("folder", root=image_folder, group_by="regex", pattern=r"^(z)")
    with pytest.raises(ValueError, match="group_by"):
        data.load_records("folder", root=image_folder, group_by="color")


def test_read_image_file_conversions(image_folder):
    sixteen = data.read_image_file(image_folder / "a" / "sixteen.tif")
    assert sixteen.dtype == np.uint8 and sixteen.shape == (30, 40, 3)
    assert sixteen.min() == 0 and sixteen.max() == 255  # 16-bit range stretched
    pages = [data.read_image_file(image_folder / "a" / "pages.tif", page=k) for k in range(3)]
    assert all(p.shape == (20, 20, 3) for p in pages)
    with pytest.raises(data.ImageReadError, match="page 3 requested"):
        data.read_image_file(image_folder / "a" / "pages.tif", page=3)
    gray = data.read_image_file(image_folder / "b" / "gray.png")
    assert (gray[..., 0] == gray[..., 1]).all() and gray[0, -1, 0] == 240
    rgba = data.read_image_file(image_folder / "b" / "rgba.png")
    assert (rgba[:, :5] == 0).all() and (rgba[:, 5:] == 200).all()  # composited on black


def test_fit_pad_and_crop(tmp_path):
    path = _save(tmp_path / "wide" / "white.png", np.full((20, 40, 3), 255, np.uint8))
    records = data.load_records("folder", root=tmp_path / "wide")
    padded = data.load_images(records, 40, progress=False)[0]
    assert padded[:8].max() == 0 and padded[12:28].min() == 255
    cropped = data.load_images(records, 40, fit="crop", progress=False)[0]
    assert cropped.min() == 255
    with pytest.raises(ValueError, match="fit"):
        data.load_images(records, 40, fit="stretch", progress=False)
    assert path.is_file()


def test_dsb2018_local_copy(shared_data):
    records = data.load_records("dsb2018", root=shared_data(DSB), limit=120)
    assert len(records) == 120 and records["image_id"].str.startswith("dsb2018:").all()
    assert set(records["modality"]) == {"fluorescence", "histology_he", "microscopy_brightfield"}
    # Siblings share a group, but no group swallows the data set.
    assert 10 < records["group"].nunique() < len(records)
    assert records.groupby("group").size().max() <= 0.2 * len(records)
    sizes = records["group"].str.split(":").str[1]  # a group never mixes image sizes
    assert records.assign(size=sizes).groupby("group")["size"].nunique().max() == 1
    images = data.load_images(records.head(4), 32, progress=False)
    assert images.shape == (4, 32, 32, 3)


def test_bccd_local_copy_groups_consecutive_frames(shared_data):
    records = data.load_records("bccd", root=shared_data(BCCD), limit=25)
    assert len(records) == 25 and (records["modality"] == "blood_smear").all()
    frames = records["image_id"].str.extract(r"BloodImage_(\d+)")[0].astype(int)
    np.testing.assert_array_equal(records["pos"], frames)
    assert (records["group"] == "bccd:smear" + (frames // 10).map("{:03d}".format)).all()
    assert (records["unit"] == "frame").all() and (records["axis"] == "time").all()


def test_folder_on_shared_bccd_with_regex(shared_data):
    records = data.load_records(
        "folder", root=shared_data(BCCD), group_by="regex", pattern=r"BloodImage_(\d{4})", limit=20
    )
    assert len(records) == 20 and records["group"].nunique() == 2  # 0000x and 0001x


def test_groups_stay_within_one_source(embedded, shared_data):
    records = pd.concat(
        [
            embedded,
            data.load_records("haxby", root=shared_data(HAXBY)),
            data.load_records("bccd", root=shared_data(BCCD), limit=15),
            data.load_records("dsb2018", root=shared_data(DSB), limit=15),
        ],
        ignore_index=True,
    )
    assert records["image_id"].is_unique
    assert (records.groupby("group")["source"].nunique() == 1).all()
    assert all(
        g.startswith(s + ":") for g, s in zip(records["group"], records["source"], strict=True)
    )


def test_build_dataset_aligns_records_and_images(shared_data):
    bccd, haxby = shared_data(BCCD), shared_data(HAXBY)
    records, images = data.build_dataset(
        [{"source": "bccd", "root": bccd, "limit": 6}, {"source": "haxby", "root": haxby}],
        size=24,
        progress=False,
    )
    assert len(records) == len(images) == 6 + len(data.load_records("haxby", root=haxby))
    assert images.shape[1:] == (24, 24, 3) and images.dtype == np.uint8
    with pytest.raises(ValueError, match="duplicate image ids"):
        data.build_dataset([{"source": "bccd", "root": bccd, "limit": 2}] * 2, 8, progress=False)


# ----------------------------------------------------------------------------- bad files


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size in a few bytes, like a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _bad_files(folder):
    """Bad files of every kind, with the words their error must contain."""
    rng = np.random.default_rng(0)
    good = _save(folder / "good.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    png = good.read_bytes()
    jpg = _save(folder / "tmp.jpg", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    jpg_bytes = jpg.read_bytes()
    jpg.unlink()
    corrupt = bytearray(png)
    corrupt[len(png) // 2 : len(png) // 2 + 64] = bytes(64)
    bad = {
        "empty.png": (b"", "empty"),
        "text.png": (b"hello, I am a text file\n", "not an image"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "truncated.jpg": (jpg_bytes[: len(jpg_bytes) // 2], "truncated"),
        "corrupt.png": (bytes(corrupt), "corrupt"),
        "bomb.png": (_png_header_only(30_000, 30_000), "decompression bomb"),
    }
    for name, (content, _) in bad.items():
        (folder / name).write_bytes(content)
    return {name: words for name, (_, words) in bad.items()}


def test_each_bad_file_kind_raises_a_named_error(tmp_path):
    for name, words in _bad_files(tmp_path).items():
        with pytest.raises(data.ImageReadError, match=words) as info:
            data.read_image_file(tmp_path / name)
        assert name in str(info.value) and info.value.path.name == name
    with pytest.raises(data.ImageReadError, match="max_pixels"):
        data.read_image_file(tmp_path / "good.png", max_pixels=100)
    with pytest.raises(data.ImageReadError, match="no such file"):
        data.read_image_file(tmp_path / "missing.png")


def test_on_error_skip_logs_and_drops_bad_files(tmp_path, caplog):
    bad = _bad_files(tmp_path)
    with pytest.raises(data.ImageReadError):
        data.load_records("folder", root=tmp_path)
    with caplog.at_level(logging.WARNING, logger="bfutils.data"):
        records = data.load_records("folder", root=tmp_path, on_error="skip")
    assert records["path"].map(lambda p: p.endswith("good.png")).tolist() == [True]
    for name in bad:
        assert any(name in r.getMessage() for r in caplog.records), name


def test_build_dataset_skips_files_that_fail_to_decode(tmp_path, caplog):
    _bad_files(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bfutils.data"):
        records, images = data.build_dataset(
            [{"source": "folder", "root": tmp_path}], 16, on_error="skip", progress=False
        )
    assert len(records) == len(images) == 1
    assert any("truncated.jpg" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- downloads


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


def test_download_verifies_sha256(tmp_path):
    archive = _zip(tmp_path / "src.zip", {"a.txt": b"hello"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = data.download(archive.as_uri(), tmp_path / "dl" / "a.zip", sha256=digest, progress=False)
    assert dest.read_bytes() == archive.read_bytes()
    with pytest.raises(data.ChecksumError, match="expected 0000"):
        data.download(archive.as_uri(), tmp_path / "dl" / "b.zip", sha256="0" * 64, progress=False)
    assert list((tmp_path / "dl").iterdir()) == [dest]  # nothing half-written is left


def test_download_records_digest_when_none_is_pinned(tmp_path, caplog):
    archive = _zip(tmp_path / "src.zip", {"a.txt": b"hello"})
    dest = tmp_path / "dl" / "a.zip"
    with caplog.at_level(logging.WARNING, logger="bfutils.data"):
        data.download(archive.as_uri(), dest, progress=False)
    sidecar = dest.with_name("a.zip.sha256")
    assert sidecar.read_text().split()[0] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert any("no pinned sha256" in r.getMessage() for r in caplog.records)
    dest.write_bytes(b"tampered")
    with pytest.raises(data.ChecksumError, match="delete"):
        data.download(archive.as_uri(), dest, progress=False)


def test_download_failure_names_url_and_offline_fix(tmp_path):
    url = (tmp_path / "missing.zip").as_uri()
    with pytest.raises(data.DownloadError, match=re.escape(url)) as info:
        data.download(url, tmp_path / "dl" / "x.zip", progress=False)
    assert "root=" in str(info.value)


def test_named_source_downloads_once_into_raw(tmp_path, monkeypatch):
    photo = tmp_path / "p.jpg"
    _save(photo, np.full((12, 16, 3), 180, np.uint8))
    members = {
        f"BCCD_Dataset-master/BCCD/JPEGImages/BloodImage_{n:05d}.jpg": photo.read_bytes()
        for n in (3, 9, 12)
    }
    archive = _zip(tmp_path / "bccd.zip", members)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    fake = downloads.Archive(url=archive.as_uri(), sha256=digest, filename="bccd.zip")
    monkeypatch.setitem(downloads.ARCHIVES, "bccd", fake)
    monkeypatch.setattr(paths, "RAW", tmp_path / "raw")
    records = data.load_records("bccd")
    assert records["group"].tolist() == ["bccd:smear000", "bccd:smear000", "bccd:smear001"]
    archive.unlink()  # a second call must not download again
    assert len(data.load_records("bccd")) == 3


def test_zip_slip_is_refused(tmp_path):
    archive = _zip(tmp_path / "evil.zip", {"../evil.txt": b"x"})
    with pytest.raises(data.DownloadError, match="escapes"):
        downloads.extract(archive, tmp_path / "out")


def test_graphics_are_drawn_the_same_every_time_and_replicates_differ():
    recs = data.load_records("graphics", groups=2, replicates=2)
    assert len(recs) == 3 * 2 * 2 and set(recs["modality"]) == {
        "western_blot",
        "dna_gel",
        "flow_cytometry",
    }
    assert recs.groupby("group").size().eq(2).all()
    for kind in ("blot", "gel", "dotplot"):
        mine = recs[recs["source_name"] == kind]
        first, again = (data.record_pixels(r) for r in (mine.iloc[0], mine.iloc[0]))
        other = data.record_pixels(mine.iloc[1])  # the same experiment, another replicate
        assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
        assert np.array_equal(first, again)
        assert not np.array_equal(first, other)
        assert first.std() > 10  # bands or dots, not a blank canvas
        assert first.shape == other.shape  # replicates share the experiment's design
        elsewhere = data.record_pixels(mine.iloc[2])  # another experiment
        assert mine.iloc[2]["group"] != mine.iloc[0]["group"]
        assert elsewhere.shape != first.shape or not np.array_equal(elsewhere, first)
    with pytest.raises(ValueError, match="takes no root"):
        data.load_records("graphics", root="x")
