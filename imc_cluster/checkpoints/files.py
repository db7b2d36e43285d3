"""Checkpoint files: the format, its integrity, atomic writes and safe reads.

A checkpoint is one header line, ``imc-cluster-checkpoint <format> <library version> sha256=<digest>
bytes=<size>``, followed by a ``torch.save`` archive of plain containers (dicts, lists, str, int, float,
bool, None) and tensors. Reading checks the size and the SHA-256 digest of the archive first, so a flipped
bit, a truncation or foreign bytes are reported as corruption; then reads it with
``torch.load(weights_only=True)``, which never unpickles arbitrary objects, so a crafted file cannot run
code; then validates every section (:mod:`~imc_cluster.checkpoints.sections`). Every write goes to a
temporary file in the target's folder, is flushed to disk, and then replaces the target in one
``os.replace``: a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import warnings
import zipfile
from pathlib import Path

import torch

from imc_cluster.checkpoints.sections import SECTIONS, validate_sections
from imc_cluster.core.files import atomic_write, probe_folder

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SECTIONS",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "check_writable",
    "to_cpu",
]

#: identifies imc-cluster checkpoints
FORMAT = "imc-cluster"
#: layout version of the checkpoint dictionary; bumped when a reader could misread a newer file
FORMAT_VERSION = 2
#: first word of a checkpoint's header line
_MAGIC = "imc-cluster-checkpoint"


class CheckpointError(ValueError):
    """A file that is not a readable, intact imc-cluster checkpoint."""


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, with a clear message, when ``path``'s folder cannot take a checkpoint."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"Checkpoint path {path} is a directory; give a file name.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe_folder(folder)
    except OSError as error:
        raise ValueError(f"Cannot write checkpoints to {folder}: {error.strerror or error}.") from error
    return path


def save_checkpoint(content: dict, path: str | os.PathLike, library_version: str) -> None:
    """Write the sections in ``content`` to ``path`` atomically, under the integrity header.

    Parameters
    ----------
    content : dict
        One entry per name of :data:`SECTIONS`: plain containers and tensors only.
    path : path-like
        Target file; its folder is created if needed.
    library_version : str
        The imc-cluster version that writes the file.
    """
    path = check_writable(path)
    body = io.BytesIO()
    torch.save(dict(content), body)
    body = body.getvalue()
    digest = hashlib.sha256(body).hexdigest()
    header = f"{_MAGIC} {FORMAT_VERSION} {library_version} sha256={digest} bytes={len(body)}"
    with atomic_write(path) as handle:
        handle.write(header.encode("ascii") + b"\n")
        handle.write(body)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The validated sections of a checkpoint written by :func:`save_checkpoint`, tensors on the CPU.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    CheckpointError
        When the file is not an imc-cluster checkpoint, is truncated or corrupt (its digest does not match),
        holds anything but plain data and tensors, has a section of the wrong keys or types or non-finite
        weights, or was written in another format than this version reads.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file.")
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    raw = path.read_bytes()
    header, _, body = raw.partition(b"\n")
    if not header.startswith(_MAGIC.encode("ascii") + b" "):
        _refuse_foreign(path, raw)
    fields = header.decode("ascii", errors="replace").split(" ")
    if len(fields) > 1 and fields[1] != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path} is in checkpoint format {fields[1]!r} (or its header is corrupt); "
            "this "
            f"version of imc-cluster reads format {FORMAT_VERSION}."
        )
    if len(fields) != 5:
        raise CheckpointError(f"{path} is truncated or corrupt: its header line is incomplete.")
    if fields[3] != f"sha256={hashlib.sha256(body).hexdigest()}" or fields[4] != f"bytes={len(body)}":
        raise CheckpointError(
            f"{path} is truncated or corrupt: its integrity digest does not match its content."
        )
    try:
        content = _torch_load(io.BytesIO(body))
        validate_sections(content)
    except CheckpointError as error:
        raise CheckpointError(f"{path} {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid section: {error}") from None
    return content


def _torch_load(source):
    """``torch.load(source, weights_only=True)`` on the CPU; what it cannot read is a CheckpointError."""
    try:
        with warnings.catch_warnings():  # torch warns about some foreign files before failing on them
            warnings.simplefilter("ignore")
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            "holds objects other than plain data and tensors: refusing to load it."
        ) from None
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        UnicodeDecodeError,
        zipfile.BadZipFile,
        struct.error,
        MemoryError,
        OverflowError,
    ) as error:
        raise CheckpointError(
            f"is truncated or corrupt: it cannot be read ({type(error).__name__})."
        ) from None


def _refuse_foreign(path: Path, raw: bytes) -> None:
    """Raise the CheckpointError of a file without our header: a checkpoint of an older format, or not one."""
    try:
        record = _torch_load(io.BytesIO(raw))
    except CheckpointError:
        record = None
    if isinstance(record, dict) and record.get("format") == FORMAT:
        raise CheckpointError(
            f"{path} was written by imc-cluster {record.get('library_version', '?')} in "
            f"checkpoint format {record.get('format_version')!r}; this version reads "
            "format "
            f"{FORMAT_VERSION}: fit the model again with this version."
        )
    raise CheckpointError(f"{path} is not an imc-cluster checkpoint, or its header is corrupt.")


def to_cpu(state):
    """``state`` with every tensor, at any depth, detached and moved to the CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {key: to_cpu(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(to_cpu(value) for value in state)
    return state
