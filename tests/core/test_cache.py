"""The cache folder: where it is, its size, and emptying only a folder that is imc-cluster's."""

import os
import sys
from pathlib import Path

import pytest

from imc_cluster.core import cache
from imc_cluster.core.cache import CACHE_ENV, cache_folder, cache_root, cache_size, clear_cache


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)


def test_argument_wins_over_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache_root() == tmp_path / "env"


def test_relative_and_home_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cache_root("c") == tmp_path / "c"
    assert cache_root("~/c") == Path.home() / "c"


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the Linux folders")
def test_linux_default(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "imc_cluster"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert cache_root() == Path.home() / ".cache" / "imc_cluster"
    monkeypatch.setenv(CACHE_ENV, "")  # empty: unset
    assert cache_root() == Path.home() / ".cache" / "imc_cluster"


def test_other_platforms(tmp_path, monkeypatch):
    monkeypatch.setattr(cache.sys, "platform", "darwin")
    assert cache_root() == Path.home() / "Library" / "Caches" / "imc_cluster"
    monkeypatch.setattr(cache.sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))
    assert cache_root() == tmp_path / "imc_cluster" / "Cache"


@pytest.mark.parametrize("bad", [3, 1.5, b"bytes", ["a"]])
def test_non_paths_are_type_errors(bad):
    with pytest.raises(TypeError, match="cache_dir must be a folder path"):
        cache_root(bad)


def test_empty_and_file_are_value_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="empty path"):
        cache_root("")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        cache_root(tmp_path / "f")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "f"))
    with pytest.raises(ValueError, match=f"{CACHE_ENV} must be a folder"):
        cache_root()


def test_size_and_clear(tmp_path):
    root = tmp_path / "cache"
    assert cache_size(root) == 0 and clear_cache(root) == 0
    folder = cache_folder("decoded", root)
    (folder / "a.bin").write_bytes(b"x" * 100)
    (folder / "sub").mkdir()
    (folder / "sub" / "b.bin").write_bytes(b"y" * 50)
    marker = (root / cache.MARKER_NAME).stat().st_size
    assert cache_size(root) == 150 + marker
    assert clear_cache(root) == 150
    assert sorted(os.listdir(root)) == [cache.MARKER_NAME]
    assert cache_size(root) == marker


def test_clear_refuses_a_folder_that_is_not_ours(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an imc-cluster cache"):
        clear_cache(tmp_path)
    (tmp_path / cache.MARKER_NAME).write_text("Signature: 8a477f597d28d172789f06886806bc55\n")  # another's
    with pytest.raises(ValueError, match="not an imc-cluster cache"):
        clear_cache(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_clear_does_not_follow_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    root = tmp_path / "cache"
    cache_folder("decoded", root)
    try:
        os.symlink(outside, root / "decoded" / "link", target_is_directory=True)
    except OSError:
        pytest.skip("symbolic links not permitted")
    clear_cache(root)
    assert (outside / "keep.txt").read_text() == "keep"
