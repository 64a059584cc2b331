"""Downloads of the public archives behind ``dsb2018`` and ``bccd``, verified and cached.

Plain :mod:`urllib` rather than pooch: pooch has no ``file://`` support (the tests serve
archives from files), re-downloads a cached file whose digest changed instead of refusing it,
and would still need the recorded-digest sidecar and the error translation below.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bfutils import paths
from bfutils.progress import bar as tqdm

logger = logging.getLogger(__name__)

DSB2018_URL = "https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip"
BCCD_URL = "https://github.com/Shenggan/BCCD_Dataset/archive/refs/heads/master.zip"
# Not pinned yet (they could not be fetched when this was written): the first download records
# the digest beside the archive (``<archive>.sha256``), logs it, and later runs verify against it.
DSB2018_SHA256: str | None = None
BCCD_SHA256: str | None = None


class DownloadError(RuntimeError):
    """A public archive could not be downloaded or unpacked."""


class ChecksumError(DownloadError):
    """A downloaded archive does not have the expected sha256 digest."""


@dataclass(frozen=True)
class Archive:
    """Where a named archive comes from, its digest, and its file name in the cache."""

    url: str
    sha256: str | None
    filename: str


ARCHIVES = {
    "dsb2018": Archive(url=DSB2018_URL, sha256=DSB2018_SHA256, filename="stage1_train.zip"),
    "bccd": Archive(url=BCCD_URL, sha256=BCCD_SHA256, filename="BCCD_Dataset-master.zip"),
}


def download(
    url: str, dest: str | Path, *, sha256: str | None = None, progress: bool = True
) -> Path:
    """Download ``url`` to ``dest`` once, verifying its sha256 digest.

    Without ``sha256`` the digest of the first download is stored in ``<dest>.sha256`` (and
    logged) and later calls verify against it.

    Returns:
        ``dest`` as a Path.

    Raises:
        DownloadError: The URL could not be fetched (the message says how to work offline).
        ChecksumError: The file does not match the expected digest (a bad file is removed).
    """
    dest = Path(dest)
    sidecar = dest.with_name(dest.name + ".sha256")
    expected = sha256 or (sidecar.read_text().split()[0] if sidecar.is_file() else None)
    if dest.is_file():
        _verify(dest, expected, source=str(dest), remove=False)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        try:
            digest = _stream(url, part, progress=progress)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"could not download {url} ({exc}). Download it on a machine with internet, "
                f"unpack it and pass root=<that folder>, or place the archive at {dest}."
            ) from exc
        _verify(part, expected, source=url, remove=True, digest=digest)
        part.replace(dest)
    if expected is None:
        digest = _sha256(dest)
        sidecar.write_text(f"{digest}  {dest.name}\n")
        logger.warning("no pinned sha256 for %s: recorded %s in %s", url, digest, sidecar)
    return dest


def fetch(name: str) -> Path:
    """Folder of the unpacked public archive ``name``, downloaded into ``paths.RAW`` once."""
    archive = ARCHIVES[name]
    folder = paths.RAW / name  # looked up at each call: tests and users may move RAW
    unpacked, done = folder / "extracted", folder / "extracted.done"
    if not done.is_file():
        zip_path = download(archive.url, folder / archive.filename, sha256=archive.sha256)
        extract(zip_path, unpacked)
        done.touch()
    return unpacked


def extract(archive: Path, out: Path) -> None:
    """Unpack a zip into ``out``, refusing members that would land outside it (zip slip)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if not (out / member).resolve().is_relative_to(out.resolve()):
                    raise DownloadError(f"{archive}: member {member!r} escapes {out}")
            zf.extractall(out)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive} is not a valid zip ({exc}); delete it and retry") from exc


def _stream(url: str, part: Path, *, progress: bool) -> str:
    """Copy ``url`` into ``part`` with a progress bar; returns the sha256 hex digest."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=part.name, disable=not progress)
        with bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected, *, source: str, remove: bool, digest=None) -> None:
    if expected is None:
        return
    digest = digest or _sha256(path)
    if digest != expected.lower():
        if remove:
            path.unlink(missing_ok=True)
        raise ChecksumError(
            f"sha256 of {source} is {digest}, expected {expected}"
            + ("" if remove else f"; delete {path} to download it again")
        )
