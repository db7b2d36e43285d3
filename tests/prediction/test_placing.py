"""Acting on clusters: files copied or linked into a folder per cluster, names never overwritten, the
options checked before anything is written."""

import hashlib
import math
import os
from pathlib import Path

import pytest

from imc_cluster.prediction.placing import (
    check_min_confidence,
    cluster_folder_name,
    place_files,
    placing_target,
)


def _photos(root: Path, names: list[str]) -> list[str]:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(hashlib.sha256(name.encode()).digest() * 3)
    return names


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    _photos(root, ["a/x.png", "b/x.png", "c/x.png", "y.jpg", "z.tar.png"])
    return root


def test_cluster_folders_are_zero_padded_to_the_largest_index():
    assert [cluster_folder_name(k, 10) for k in (0, 9)] == ["cluster_0", "cluster_9"]
    assert [cluster_folder_name(k, 20) for k in (3, 19)] == ["cluster_03", "cluster_19"]
    assert cluster_folder_name(7, 101) == "cluster_007"


def test_copies_keep_their_bytes_and_same_names_get_numbers(photos, tmp_path):
    paths = ["a/x.png", "b/x.png", "c/x.png", "y.jpg", "z.tar.png"]
    target = placing_target(photos, tmp_path / "sorted", None)
    placement = place_files(
        photos, paths, ["cluster_1", "cluster_1", "uncertain", "cluster_1", "cluster_0"], target
    )
    assert placement.mode == "copy" and placement.folder == str(tmp_path / "sorted")
    assert placement.files == [
        "cluster_1/x.png",
        "cluster_1/x (2).png",
        "uncertain/x.png",
        "cluster_1/y.jpg",
        "cluster_0/z.tar.png",
    ]
    for source, copy in zip(paths, placement.files):
        assert (tmp_path / "sorted" / copy).read_bytes() == (photos / source).read_bytes()
        assert (tmp_path / "sorted" / copy).stat().st_mtime_ns == (photos / source).stat().st_mtime_ns
        assert not (tmp_path / "sorted" / copy).is_symlink()


def test_files_of_an_earlier_run_are_never_overwritten(photos, tmp_path):
    target = placing_target(photos, tmp_path / "sorted", None)
    (tmp_path / "sorted" / "cluster_0").mkdir(parents=True)
    (tmp_path / "sorted" / "cluster_0" / "y.jpg").write_bytes(b"mine")
    first = place_files(photos, ["y.jpg", "a/x.png"], ["cluster_0", "cluster_0"], target)
    second = place_files(photos, ["y.jpg", "a/x.png"], ["cluster_0", "cluster_0"], target)
    assert first.files == ["cluster_0/y (2).jpg", "cluster_0/x.png"]
    assert second.files == ["cluster_0/y (3).jpg", "cluster_0/x (2).png"]
    assert (tmp_path / "sorted" / "cluster_0" / "y.jpg").read_bytes() == b"mine"
    assert len(os.listdir(tmp_path / "sorted" / "cluster_0")) == 5


def test_links_point_to_the_absolute_files(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = placing_target(Path("photos"), None, "linked")
    try:
        placement = place_files(photos.resolve(), ["a/x.png", "b/x.png"], ["cluster_0", "cluster_0"], target)
    except (OSError, NotImplementedError) as error:  # e.g. Windows without the privilege
        pytest.skip(f"no symbolic links here: {error}")
    assert placement.mode == "link" and placement.files == ["cluster_0/x.png", "cluster_0/x (2).png"]
    for source, link in zip(["a/x.png", "b/x.png"], placement.files):
        made = tmp_path / "linked" / link
        assert made.is_symlink() and os.path.isabs(os.readlink(made))
        assert Path(os.readlink(made)) == photos.resolve() / source
        assert made.read_bytes() == (photos / source).read_bytes()


@pytest.mark.parametrize("value", [0, 0.5, 1, 1.0])
def test_min_confidence_in_zero_one(value):
    assert check_min_confidence(value) == value and isinstance(check_min_confidence(value), float)
    assert check_min_confidence(None) is None


@pytest.mark.parametrize(
    "value, error, message",
    [
        (-0.1, ValueError, "between 0 and 1, got -0.1"),
        (1.5, ValueError, "between 0 and 1, got 1.5"),
        (math.nan, ValueError, "between 0 and 1, got nan"),
        (math.inf, ValueError, "between 0 and 1"),
        ("abc", TypeError, "must be a number between 0 and 1, got 'abc'"),
        ("0.5", TypeError, "must be a number"),
        (True, TypeError, "must be a number"),
        ([0.5], TypeError, "must be a number"),
    ],
)
def test_bad_min_confidence_is_named(value, error, message):
    with pytest.raises(error, match=message):
        check_min_confidence(value)


def test_bad_targets_are_named(photos, tmp_path):
    assert placing_target(photos, None, None) is None
    with pytest.raises(ValueError, match="copy_to and link_to exclude each other"):
        placing_target(photos, tmp_path / "a", tmp_path / "b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"copy_to must be a folder, but .*file is a file"):
        placing_target(photos, tmp_path / "file", None)
    for inside in (photos, photos / "sorted", photos / "a" / "deeper", photos / ".." / "photos" / "s"):
        with pytest.raises(ValueError, match=r"link_to .* is inside the image folder"):
            placing_target(photos, None, inside)
    with pytest.raises(ValueError, match="empty path"):
        placing_target(photos, "", None)
    with pytest.raises(TypeError, match="link_to must be a folder path"):
        placing_target(photos, None, 3)
    assert placing_target(photos, tmp_path / "photos-sorted", None) == ("copy", tmp_path / "photos-sorted")
