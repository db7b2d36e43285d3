"""Checkpoint files: atomic writes and safe reads.

A checkpoint is a ``torch.save`` of plain containers (dicts, lists, str, int, float, bool, None) and tensors,
read back with ``torch.load(weights_only=True)``: loading never unpickles arbitrary objects, so a crafted
file cannot run code. Every write goes to a temporary file in the target's folder, is flushed to disk, and
then replaces the target in one ``os.replace``: a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import torch

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "save_checkpoint", "load_checkpoint",
           "check_writable"]

#: identifies imc-cluster checkpoints
FORMAT = "imc-cluster"
#: layout version of the checkpoint dictionary; bumped when a reader could misread a newer file
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable imc-cluster checkpoint."""


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, with a clear message, when ``path``'s folder cannot take a checkpoint."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"Checkpoint path {path} is a directory; give a file name.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as error:
        raise ValueError(f"Cannot write checkpoints to {folder}: {error.strerror or error}.") from error
    return path


def save_checkpoint(payload: dict, path: str | os.PathLike) -> None:
    """Write ``payload`` to ``path`` atomically.

    Parameters
    ----------
    payload : dict
        Plain containers and tensors only.
    path : path-like
        Target file; its folder is created if needed.
    """
    path = check_writable(path)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, on the CPU.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    CheckpointError
        When the file is not an imc-cluster checkpoint, holds anything but plain data and tensors, is
        truncated or corrupt, or was written in a newer format than this version reads.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path} holds objects other than plain data and tensors; refusing to load it "
                              f"(only files written by imc-cluster are read). Detail: {error}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an imc-cluster checkpoint.")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by imc-cluster {payload.get('library_version', '?')} in checkpoint format "
            f"{version}; this version reads format {FORMAT_VERSION} and older. Upgrade imc-cluster to load it."
        )
    return payload
