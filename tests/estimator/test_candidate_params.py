"""``n_clusters`` as candidate Ks: what the estimator takes (kept as given, read as a sorted tuple), and the
error, naming the parameter, of every value it refuses."""

import numpy as np
import pytest

from imc_cluster import IMCSwAVClustering
from imc_cluster.estimator.params import checked_params


@pytest.mark.parametrize(
    "given, read",
    [
        ((5, 10, 20), (5, 10, 20)),
        ([20, 5, 10], (5, 10, 20)),
        (np.array([3, 2]), (2, 3)),
        ((np.int64(4), 2), (2, 4)),
        (range(2, 5), (2, 3, 4)),
        (7, 7),
        (np.int32(3), 3),
    ],
)
def test_candidates_are_kept_as_given_and_read_sorted(given, read):
    est = IMCSwAVClustering(n_clusters=given, n_heads=3)
    assert est.get_params()["n_clusters"] is given
    params = checked_params(est)
    assert params["n_clusters"] == read
    assert type(params["n_clusters"]) is type(read)
    assert all(type(k) is int for k in np.atleast_1d(params["n_clusters"]).tolist())


@pytest.mark.parametrize(
    "given, error, words",
    [
        ((5, 5, 10), ValueError, "repeats the candidate"),
        ((5,), ValueError, "at least two candidate"),
        ([], ValueError, "at least two candidate"),
        ((1, 5), ValueError, ">= 2"),
        ((0, 5), ValueError, ">= 2"),
        ((-3, 5), ValueError, ">= 2"),
        ((True, 5), TypeError, "must be ints"),
        ((2.0, 5), TypeError, "must be ints"),
        (("2", "5"), TypeError, "must be ints"),
        ([[2, 3], [4, 5]], TypeError, "must be ints"),
        (np.array([[2, 3], [4, 5]]), TypeError, "must be ints"),
        ("5 10", ValueError, "n_clusters"),
        (5.0, ValueError, "n_clusters"),
        (True, ValueError, "n_clusters"),
        (None, ValueError, "n_clusters"),
        ({2, 3}, TypeError, "n_clusters"),
    ],
)
def test_bad_candidates_are_refused_naming_the_parameter(given, error, words):
    with pytest.raises(error, match="n_clusters") as raised:
        checked_params(IMCSwAVClustering(n_clusters=given, n_heads=3))
    assert words in str(raised.value)


def test_candidates_need_two_heads_each():
    with pytest.raises(ValueError, match=r"needs n_heads >= 2 \(e.g. n_heads=5\), got n_heads=1"):
        checked_params(IMCSwAVClustering(n_clusters=(2, 3)))
    assert checked_params(IMCSwAVClustering(n_clusters=(2, 3), n_heads=2))["n_clusters"] == (2, 3)


def test_a_fit_refuses_more_clusters_than_samples():
    X = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="should be >= n_clusters"):
        IMCSwAVClustering(n_clusters=(2, 5), n_heads=2).fit(X)
