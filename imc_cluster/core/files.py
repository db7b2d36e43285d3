"""Atomic file writes: temporary files beside the targets, flushed to disk, then renamed onto them, so a crash
or an error mid-write leaves the previous files intact and never a half-written one; several files written
together replace their targets only once every one of them is written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "atomic_writes", "probe_folder"]


@contextlib.contextmanager
def atomic_write(target: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``target`` for writing; on a clean exit it replaces ``target`` (readable
    by all, like a new file), on an error it is removed and ``target`` is untouched.

    Parameters
    ----------
    target : path-like
        The file to write; its folder must exist.
    mode : {"wb", "w"}
        Binary, or text in UTF-8 with universal newlines off (file names that are not UTF-8, read as
        surrogates, are written back as the same bytes).
    """
    with atomic_writes((target, mode)) as (handle,):
        yield handle


@contextlib.contextmanager
def atomic_writes(*targets: tuple[str | os.PathLike, str]) -> Iterator[list[IO]]:
    """:func:`atomic_write` for several ``(target, mode)`` files at once: every target is replaced only when
    all of them were written without an error (then one after another), none otherwise."""
    for target, _ in targets:
        if Path(target).is_dir():
            raise IsADirectoryError(f"Cannot write {target}: it is a directory.")
    handles: list = []
    try:
        for target, mode in targets:
            target = Path(target)
            text = (
                {"newline": "", "encoding": "utf-8", "errors": "surrogateescape"} if "b" not in mode else {}
            )
            handles.append(
                tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept past its block: renamed onto the target)
                    mode, dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False, **text
                )
            )
        yield handles
        for handle in handles:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.chmod(handle.name, 0o644)
        for handle, (target, _) in zip(handles, targets):
            os.replace(handle.name, target)
    finally:
        for handle in handles:
            handle.close()
            Path(handle.name).unlink(missing_ok=True)


def probe_folder(folder: str | os.PathLike) -> None:
    """Raise the OSError of a file that cannot be created in ``folder`` (a trial file, removed at once)."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".imc-cluster-", suffix=".probe"):
        pass
