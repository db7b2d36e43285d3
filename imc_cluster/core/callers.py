"""Warnings that point at the user's code: the ``stacklevel`` of the first frame outside the package."""

from __future__ import annotations

import os
import sys

__all__ = ["user_stacklevel"]

#: the package's folder: frames of files under it are the library's own
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning issued by the caller point at the first frame outside
    imc_cluster (the user's call of ``fit``, say)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
