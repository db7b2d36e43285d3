"""Acting on clusters: every predicted image file copied, or linked, into a folder per cluster.

:func:`check_min_confidence` and :func:`placing_target` check the options before anything is read or
written; :func:`place_files` then puts ``<root>/<path>`` into ``<DIR>/<cluster folder>/<file name>``: the
cluster folders are named by :func:`cluster_folder_name` (``cluster_3``, or ``cluster_03`` among 10 to 100
clusters), files less confident than ``min_confidence`` go to ``<DIR>/uncertain/``. A file name already
taken in its folder, by another file of the run (the same name in two subfolders) or by an earlier run, gets
a number: ``photo (2).jpg``, ``photo (3).jpg``; nothing in ``DIR`` is ever overwritten.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from numbers import Real
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "UNCERTAIN_FOLDER",
    "Placement",
    "cluster_folder_name",
    "check_min_confidence",
    "placing_target",
    "place_files",
]

#: the folder, inside the target, of the files less confident than ``min_confidence``
UNCERTAIN_FOLDER = "uncertain"


class Placement(NamedTuple):
    """Where the files of a prediction were put: ``mode`` ("copy" or "link"), the target ``folder``
    (absolute) and, per readable file, its new path relative to it ("/" separators)."""

    mode: str
    folder: str
    files: list[str]


def cluster_folder_name(cluster: int, n_clusters: int) -> str:
    """``cluster_<index>``, zero-padded to the digits of the largest index, so that the folders sort in
    cluster order: ``cluster_3`` of 10 clusters, ``cluster_03`` of 20."""
    return f"cluster_{cluster:0{len(str(n_clusters - 1))}d}"


def check_min_confidence(value) -> float | None:
    """``min_confidence`` as a float in [0, 1], or None.

    Raises
    ------
    TypeError
        For anything but a real number (a bool or a string, say).
    ValueError
        For NaN or a number outside [0, 1].
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"min_confidence must be a number between 0 and 1, got {value!r}.")
    if math.isnan(value) or not 0 <= value <= 1:
        raise ValueError(f"min_confidence must be between 0 and 1, got {value!r}.")
    return float(value)


def placing_target(
    root: Path, copy_to: str | os.PathLike | None, link_to: str | os.PathLike | None
) -> tuple[str, Path] | None:
    """The mode ("copy" or "link") and folder of ``copy_to`` or ``link_to``, checked; None for neither.

    Raises
    ------
    ValueError
        When both are given, when the folder is empty, an existing file, or ``root`` or inside it (its
        files would be read as photos by the next run).
    TypeError
        When the folder is not a path.
    """
    if copy_to is not None and link_to is not None:
        raise ValueError("copy_to and link_to exclude each other: give one folder to copy or to link into.")
    if copy_to is None and link_to is None:
        return None
    mode, folder = ("copy", copy_to) if copy_to is not None else ("link", link_to)
    name = f"{mode}_to"
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"{name} must be a folder path, got {folder!r}.")
    if not os.fspath(folder):
        raise ValueError(f"{name} must name a folder, got an empty path.")
    target = Path(folder).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise ValueError(f"{name} must be a folder, but {target} is a file.")
    if target.resolve().is_relative_to(root.resolve()):
        raise ValueError(
            f"{name} {target} is inside the image folder {root}: its files would be read as photos by "
            "the next run; choose a folder outside it."
        )
    return mode, target


def _copy(source: Path, destination: Path) -> None:
    """Copy ``source`` (bytes, times and permissions, :func:`shutil.copy2`) into a new file
    ``destination``; FileExistsError when it exists."""
    with open(destination, "xb"):  # claims the name: never overwrites, also against another process
        pass
    try:
        shutil.copy2(source, destination)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


def _link(source: Path, destination: Path) -> None:
    """A symbolic link ``destination`` to the absolute ``source``; FileExistsError when it exists."""
    os.symlink(source, destination)


def _put(source: Path, folder: Path, name: str, put: Callable[[Path, Path], None], taken: dict) -> Path:
    """``put`` ``source`` into ``folder`` under ``name``, or ``stem (n)suffix`` with the first ``n`` not
    taken; ``taken`` remembers the last number of every name, so many equal names cost no rescans."""
    stem, suffix = os.path.splitext(name)
    number = taken.get((folder, name), 1)
    while True:
        destination = folder / (name if number == 1 else f"{stem} ({number}){suffix}")
        try:
            put(source, destination)
        except FileExistsError:
            number += 1
            continue
        taken[(folder, name)] = number
        return destination


def place_files(root: Path, paths: list[str], folders: list[str], target: tuple[str, Path]) -> Placement:
    """Copy or link every file ``root/paths[i]`` into ``target_folder/folders[i]/`` under its own name
    (numbered where taken); the folders are created as needed.

    Parameters
    ----------
    root : Path
        The image folder, absolute.
    paths : list of str
        The files, relative to ``root`` ("/" separators).
    folders : list of str
        The folder of every file inside the target (a cluster's, or the uncertain one).
    target : (str, Path)
        The mode ("copy" or "link") and the folder, from :func:`placing_target`.

    Returns
    -------
    Placement
    """
    mode, folder = target
    put = _copy if mode == "copy" else _link
    taken: dict = {}
    made: set[str] = set()
    placed = []
    for path, subfolder in zip(paths, folders):
        if subfolder not in made:
            (folder / subfolder).mkdir(parents=True, exist_ok=True)
            made.add(subfolder)
        destination = _put(root / path, folder / subfolder, path.rsplit("/", 1)[-1], put, taken)
        placed.append(destination.relative_to(folder).as_posix())
    return Placement(mode, str(folder), placed)
