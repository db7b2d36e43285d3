"""What counts as a number: Python's and numpy's integers and reals, never a bool (``True`` is not 1 epoch).

Every parameter that takes a number accepts numpy scalars too, as scikit-learn does (a grid built from
``np.arange`` gives them); :func:`to_python` turns them into Python numbers once they are read.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

__all__ = ["NumberError", "is_integer", "is_real", "check_integer", "check_real", "to_python"]


class NumberError(ValueError, TypeError):
    """A value that is not a number of the kind and range asked for (both a ValueError and a TypeError, as
    scikit-learn's parameter errors are)."""


def is_integer(value) -> bool:
    """Whether ``value`` is an integer (Python or numpy), not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """Whether ``value`` is a real number (Python or numpy, integer or float), not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool)


def check_integer(name: str, value, low: int = 1) -> int:
    """``value`` as a Python int, or a :class:`NumberError` naming ``name`` unless it is an integer >=
    ``low``."""
    if not is_integer(value) or value < low:
        wanted = {1: "a positive int", 0: "a non-negative int"}.get(low, f"an int >= {low}")
        raise NumberError(f"{name} must be {wanted}, got {value!r}.")
    return int(value)


def check_real(name: str, value, low: float = 0.0, high: float = math.inf) -> float:
    """``value`` as a Python float, or a :class:`NumberError` naming ``name`` unless it is a finite number in
    ``[low, high]``."""
    if not is_real(value) or not (low <= value <= high) or not math.isfinite(value):
        raise NumberError(f"{name} must be a finite number in [{low}, {high}], got {value!r}.")
    return float(value)


def to_python(value):
    """``value`` with every numpy scalar made a Python number (or bool, str) and every numpy array a (nested)
    list, at any depth of tuples, lists and dicts: what parameters and records hold once they are read or
    stored, whatever numpy types a user passed."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return type(value)(to_python(item) for item in value)
    if isinstance(value, dict):
        return {to_python(key): to_python(item) for key, item in value.items()}
    return value
