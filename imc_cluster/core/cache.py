"""The user cache folder of imc-cluster (decoded image folders, downloads): where it is, how large, how to
empty it.

The folder is, first found: the ``cache_dir`` argument, the ``IMC_CLUSTER_CACHE_DIR`` environment variable,
then the platform's user cache folder (``$XDG_CACHE_HOME/imc_cluster`` or ``~/.cache/imc_cluster`` on
Linux, ``~/Library/Caches/imc_cluster`` on macOS, ``%LOCALAPPDATA%\\imc_cluster\\Cache`` on Windows). Every
subfolder is made by :func:`cache_folder`, which also writes a ``CACHEDIR.TAG`` marker (the Cache Directory
Tagging convention, so backup tools skip the folder) naming imc-cluster: :func:`clear_cache` empties only a
folder that carries it, so a mistaken ``cache_dir`` such as a home folder is refused, never wiped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

from imc_cluster.core.files import atomic_write

__all__ = ["CACHE_ENV", "MARKER_NAME", "cache_root", "cache_folder", "cache_size", "clear_cache"]

CACHE_ENV = "IMC_CLUSTER_CACHE_DIR"
MARKER_NAME = "CACHEDIR.TAG"
_MARKER = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by imc-cluster.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The absolute path of the cache folder (it need not exist yet).

    Parameters
    ----------
    cache_dir : str or path-like, optional
        The folder to use; None: ``$IMC_CLUSTER_CACHE_DIR`` if set and not empty, else the platform's
        user cache folder. ``~`` is expanded.

    Returns
    -------
    Path

    Raises
    ------
    TypeError
        ``cache_dir`` is neither a string nor a path.
    ValueError
        It (or the environment variable) is an empty string or names an existing file.
    """
    if cache_dir is None:
        name, cache_dir = CACHE_ENV, os.environ.get(CACHE_ENV) or _platform_cache()
    else:
        name = "cache_dir"
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a folder path (str or os.PathLike), got {cache_dir!r}.")
    text = os.fsdecode(os.fspath(cache_dir))
    if not text:
        raise ValueError(f"{name} must name a folder, got an empty path.")
    root = Path(text).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise ValueError(f"{name} must be a folder, but {root} is a file.")
    return root


def _platform_cache() -> Path:
    """The platform's per-user cache folder for imc-cluster."""
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "imc_cluster" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "imc_cluster"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else home / ".cache"  # a relative XDG path is to be ignored
    return base / "imc_cluster"


def cache_folder(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Create (if needed) and return the subfolder ``name`` of the cache, marking the cache as imc-cluster's.

    Parameters
    ----------
    name : str
        A relative path inside the cache, e.g. ``"decoded"``.
    cache_dir : str or path-like, optional
        As for :func:`cache_root`.

    Returns
    -------
    Path
    """
    root = cache_root(cache_dir)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    if not _is_ours(root):
        with atomic_write(root / MARKER_NAME, "w") as handle:
            handle.write(_MARKER)
    return folder


def _is_ours(root: Path) -> bool:
    """Whether ``root`` carries the marker that :func:`cache_folder` writes."""
    try:
        return (root / MARKER_NAME).read_text(encoding="utf-8", errors="replace") == _MARKER
    except OSError:
        return False


def cache_size(cache_dir: str | os.PathLike | None = None) -> int:
    """The bytes of the files in the cache folder (0 if it does not exist); links are not followed.

    Parameters
    ----------
    cache_dir : str or path-like, optional
        As for :func:`cache_root`.

    Returns
    -------
    int
    """
    return _tree_size(cache_root(cache_dir))


def _tree_size(path: Path) -> int:
    """Bytes of the files at or below ``path``, not following links; files vanishing meanwhile count 0."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
    except FileNotFoundError:
        return 0
    total = 0
    for folder, _, files in os.walk(path):
        for file in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(folder, file)).st_size
    return total


def clear_cache(cache_dir: str | os.PathLike | None = None) -> int:
    """Delete everything in the cache folder but its marker, and return the bytes freed.

    Parameters
    ----------
    cache_dir : str or path-like, optional
        As for :func:`cache_root`.

    Returns
    -------
    int
        The bytes of the files removed (0 where the folder does not exist).

    Raises
    ------
    ValueError
        The folder exists but lacks imc-cluster's ``CACHEDIR.TAG``: it is not our cache and is left alone.
    """
    root = cache_root(cache_dir)
    if not root.exists():
        return 0
    if not _is_ours(root):
        raise ValueError(
            f"Refusing to clear {root}: it is not an imc-cluster cache folder (no {MARKER_NAME} written by "
            "imc-cluster in it)."
        )
    freed = 0
    for entry in root.iterdir():
        if entry.name != MARKER_NAME:
            freed += _tree_size(entry)
            _remove(entry)
    return freed


def _remove(entry: Path) -> None:
    """Remove a file, link or folder tree (not following links); one removed meanwhile is no error."""
    with contextlib.suppress(FileNotFoundError):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
