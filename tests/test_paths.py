"""Paths come from the package file or environment variables, never the working directory.

Also the resolution of the real data behind the ``shared_data`` fixture (``tests_helpers``).
"""

import importlib
import socket
import time

import pytest
from tests_helpers import RealData, reachable, real_data

from bfutils import paths
from bfutils.data import DownloadError

ENV = ("BFUTILS_DATA", "BFUTILS_FIGURES", "BFUTILS_RUNS", "BFUTILS_RUN_DIR")


@pytest.fixture()
def clean_env(monkeypatch):
    """No BFUTILS_* overrides (``make test`` sets some); the module is restored afterwards."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    monkeypatch.undo()
    importlib.reload(paths)


def test_paths_do_not_depend_on_the_working_directory(tmp_path, clean_env):
    clean_env.chdir(tmp_path)
    fresh = importlib.reload(paths)
    assert fresh.ROOT == fresh.Path(__file__).resolve().parent.parent
    assert fresh.RAW == fresh.ROOT / "data" / "raw"
    assert fresh.PROCESSED.is_relative_to(fresh.ROOT)


def test_environment_overrides_relative_to_root(tmp_path, clean_env):
    clean_env.setenv("BFUTILS_FIGURES", "runs/x/figures")
    clean_env.setenv("BFUTILS_RUN_DIR", str(tmp_path / "run"))
    fresh = importlib.reload(paths)
    assert fresh.FIGURES == fresh.ROOT / "runs" / "x" / "figures"
    assert fresh.run_dir() == tmp_path / "run" and (tmp_path / "run").is_dir()


def test_shared_data_is_beside_the_project():
    assert paths.shared("dsb2018").parent == paths.SHARED_DATA


# ----------------------------------------------------------------------------- real data


class _Fake:
    """A RealData whose probe and fetch are recorded; nothing is downloaded."""

    def __init__(self, tmp_path, *, online=False, fails=False):
        self.online, self.fails, self.probed, self.fetched = online, fails, [], 0
        self.folder = tmp_path / "raw" / "demo" / "extracted"
        self.known = {"demo": RealData(url="https://example.org/demo.zip", marker="demo/done",
                                       fetch=self.fetch)}  # fmt: skip

    def probe(self, url):
        self.probed.append(url)
        return self.online

    def fetch(self):
        self.fetched += 1
        if self.fails:
            raise DownloadError("could not download https://example.org/demo.zip (HTTP 503)")
        return self.folder

    def resolve(self, tmp_path, **env):
        return real_data(
            "demo", shared=tmp_path / "shared", raw=tmp_path / "raw", environ=env,
            known=self.known, probe=self.probe,
        )  # fmt: skip


def test_real_data_prefers_the_shared_folder(tmp_path):
    (tmp_path / "shared" / "demo").mkdir(parents=True)
    fake = _Fake(tmp_path, online=True)
    assert fake.resolve(tmp_path, CI="true") == tmp_path / "shared" / "demo"
    assert fake.probed == [] and fake.fetched == 0


def test_real_data_follows_bfutils_shared_data(tmp_path, monkeypatch):
    (tmp_path / "elsewhere" / "demo").mkdir(parents=True)
    monkeypatch.setenv("BFUTILS_SHARED_DATA", str(tmp_path / "elsewhere"))
    try:
        importlib.reload(paths)
        assert real_data("demo", known={}) == tmp_path / "elsewhere" / "demo"
    finally:
        monkeypatch.undo()
        importlib.reload(paths)


def test_real_data_missing_under_ci_fails_naming_the_folder(tmp_path):
    fake = _Fake(tmp_path, online=True)
    with pytest.raises(pytest.fail.Exception, match=r"shared.demo is not a folder"):
        fake.resolve(tmp_path, CI="true")
    assert fake.probed == [] and fake.fetched == 0  # CI never downloads


def test_real_data_offline_skips_saying_how_to_get_it(tmp_path):
    fake = _Fake(tmp_path, online=False)
    with pytest.raises(pytest.skip.Exception) as info:
        fake.resolve(tmp_path, CI="false")
    reason = str(info.value)
    assert "real data 'demo' not found at" in reason and str(tmp_path / "shared") in reason
    assert "BFUTILS_SHARED_DATA=" in reason and f"cached in {tmp_path / 'raw'}" in reason
    assert fake.probed == ["https://example.org/demo.zip"] and fake.fetched == 0


def test_real_data_online_downloads(tmp_path):
    fake = _Fake(tmp_path, online=True)
    assert fake.resolve(tmp_path) == fake.folder and fake.fetched == 1


def test_real_data_cached_download_needs_no_internet(tmp_path):
    (tmp_path / "raw" / "demo").mkdir(parents=True)
    (tmp_path / "raw" / "demo" / "done").touch()
    fake = _Fake(tmp_path, online=False)
    assert fake.resolve(tmp_path) == fake.folder
    assert fake.probed == [] and fake.fetched == 1


def test_real_data_failed_download_skips_with_the_error(tmp_path):
    fake = _Fake(tmp_path, online=True, fails=True)
    with pytest.raises(pytest.skip.Exception, match="HTTP 503"):
        fake.resolve(tmp_path)


def test_reachable_is_bounded_by_its_timeout(tmp_path):
    assert reachable((tmp_path / "missing.zip").as_uri()) is False
    with socket.socket() as server:  # accepts connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        start = time.monotonic()
        assert reachable(f"http://127.0.0.1:{server.getsockname()[1]}/", timeout=0.3) is False
        assert time.monotonic() - start < 2
