"""What the figures share: matplotlib, imported only when a figure is drawn (so ``import imc_cluster``
never loads it), and the check of cluster labels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pyplot", "check_labels"]


def pyplot():
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "imc_cluster's plots need matplotlib, which is not installed: pip install 'imc-cluster[plots]'"
        ) from error
    return plt


def check_labels(values, name: str) -> np.ndarray:
    """Non-empty 1-D labels that sort: integers, strings, booleans or finite floats."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}.")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    if array.dtype.kind == "O":
        try:
            np.unique(array)
        except TypeError:
            raise TypeError(
                f"{name} mixes labels that cannot be sorted together (e.g. None and numbers)."
            ) from None
    elif array.dtype.kind not in "biufUS":
        raise TypeError(f"{name} must hold integer, string or float labels, got dtype {array.dtype}.")
    return array
