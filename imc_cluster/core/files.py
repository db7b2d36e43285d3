"""Atomic file writes: a temporary file beside the target, flushed to disk, then renamed onto it, so a
crash or an error mid-write leaves the previous file intact and never a half-written one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write"]


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
    target = Path(target)
    text = {"newline": "", "encoding": "utf-8", "errors": "surrogateescape"} if "b" not in mode else {}
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept past its block: renamed onto the target)
        mode, dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False, **text
    )
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
