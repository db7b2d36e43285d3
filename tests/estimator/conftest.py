"""Fixtures of the estimator's tests: the first 120 of scikit-learn's digits (8x8 grey images)."""

import pytest
from sklearn.datasets import load_digits


@pytest.fixture(scope="session")
def _digits_120() -> tuple:
    X, y = load_digits(return_X_y=True)
    return X[:120], y[:120]


@pytest.fixture(scope="session")
def digits(_digits_120):
    """The first 120 digits as rows of 64 values (``image_shape=(8, 8)``)."""
    return _digits_120[0]


@pytest.fixture(scope="session")
def digit_labels(_digits_120):
    """The classes of :func:`digits`."""
    return _digits_120[1]
