"""Criteria for the number of clusters on constructed inputs whose answers are known."""

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, silhouette_score

from imc_cluster.criteria import (
    balance,
    feature_silhouette,
    normalized_information,
    select_n_clusters,
    stability,
    view_agreement,
)


def one_hot(labels, n_clusters: int) -> np.ndarray:
    return np.eye(n_clusters)[np.asarray(labels)]


def random_proba(n_samples: int, n_clusters: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(n_clusters), size=n_samples)


# ------------------------------------------------------------------ stability


def test_stability_of_equal_clusterings_is_one_whatever_their_names():
    labels = np.repeat([0, 1, 2], 5)
    renamed = (labels + 1) % 3
    assert stability([one_hot(labels, 3), one_hot(renamed, 3), one_hot(labels, 3)]) == pytest.approx(1.0)


def test_stability_of_independent_clusterings_is_about_zero():
    probas = [random_proba(5000, 4, seed) for seed in range(3)]
    assert stability(probas) == pytest.approx(0.0, abs=0.01)


def test_stability_is_the_mean_pairwise_ari():
    a, b = one_hot([0, 0, 1, 1], 2), one_hot([0, 0, 1, 1], 2)
    c = one_hot([0, 1, 0, 1], 2)  # ARI -0.5 with the others
    assert stability([a, b, c]) == pytest.approx((1.0 - 0.5 - 0.5) / 3)


def test_stability_needs_two_clusterings_of_the_same_samples():
    with pytest.raises(ValueError, match="at least two"):
        stability([random_proba(10, 3, 0)])
    with pytest.raises(ValueError, match="same samples"):
        stability([random_proba(10, 3, 0), random_proba(11, 3, 1)])
    with pytest.raises(ValueError, match=r"probas\[1\]"):
        stability([random_proba(10, 3, 0), np.full((10, 3), 0.5)])


# ------------------------------------------------------------------ view agreement


def test_view_agreement_of_identical_views_is_one():
    proba = one_hot(np.arange(12) % 4, 4)
    assert view_agreement(proba, proba) == pytest.approx(1.0)


def test_view_agreement_of_independent_views_is_about_zero():
    assert view_agreement(random_proba(5000, 5, 0), random_proba(5000, 5, 1)) == pytest.approx(0.0, abs=0.02)


def test_view_agreement_is_cohens_kappa_of_the_argmax():
    # observed 3/4, expected 1/2 * 1/4 + 1/2 * 3/4 = 1/2: kappa (3/4 - 1/2) / (1 - 1/2) = 1/2
    a, b = [0, 0, 1, 1], [0, 1, 1, 1]
    assert view_agreement(one_hot(a, 2), one_hot(b, 2)) == pytest.approx(0.5)
    proba_a, proba_b = random_proba(200, 3, 2), random_proba(200, 3, 3)
    expected = cohen_kappa_score(proba_a.argmax(axis=1), proba_b.argmax(axis=1))
    assert view_agreement(proba_a, proba_b) == pytest.approx(expected)


def test_view_agreement_is_zero_when_everything_is_one_cluster():
    proba = one_hot(np.zeros(6, dtype=int), 3)
    assert view_agreement(proba, proba) == 0.0


def test_view_agreement_needs_views_of_one_shape():
    with pytest.raises(ValueError, match="one shape"):
        view_agreement(random_proba(10, 3, 0), random_proba(10, 4, 1))


# ------------------------------------------------------------------ normalised information


def test_uniform_or_identical_predictions_carry_no_information():
    assert normalized_information(np.full((8, 4), 0.25)) == 0.0
    assert normalized_information(np.tile([0.7, 0.2, 0.1], (8, 1))) == pytest.approx(0.0, abs=1e-12)
    assert normalized_information(one_hot(np.zeros(8, dtype=int), 4)) == 0.0


def test_confident_balanced_predictions_carry_all_the_information():
    assert normalized_information(one_hot(np.arange(12) % 3, 3)) == pytest.approx(1.0)


def test_normalized_information_hand_computed():
    proba = np.array([[1.0, 0.0], [0.5, 0.5]])
    marginal_entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = (marginal_entropy - math.log(2) / 2) / math.log(2)
    assert normalized_information(proba) == pytest.approx(expected)


# ------------------------------------------------------------------ silhouette


def test_silhouette_of_separated_clusters_on_their_features_is_near_one():
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    features = np.eye(3)[labels] * 10 + rng.normal(scale=0.01, size=(60, 3))
    assert feature_silhouette(features, one_hot(labels, 3)) > 0.99


def test_silhouette_is_sklearns_cosine_silhouette_when_every_sample_is_drawn():
    rng = np.random.default_rng(1)
    features, proba = rng.normal(size=(50, 4)), random_proba(50, 3, 1)
    expected = silhouette_score(features, proba.argmax(axis=1), metric="cosine")
    assert feature_silhouette(features, proba) == pytest.approx(expected)


def test_silhouette_on_a_subsample_is_repeatable():
    rng = np.random.default_rng(2)
    features, proba = rng.normal(size=(300, 4)), random_proba(300, 3, 2)
    first = feature_silhouette(features, proba, sample_size=100, random_state=5)
    assert first == feature_silhouette(features, proba, sample_size=100, random_state=5)
    assert first != feature_silhouette(features, proba, sample_size=300)


def test_silhouette_of_a_single_cluster_is_minus_one():
    features = np.random.default_rng(3).normal(size=(10, 2))
    assert feature_silhouette(features, one_hot(np.zeros(10, dtype=int), 2)) == -1.0


@pytest.mark.parametrize(
    "features",
    [np.zeros((9, 2)), np.zeros(10), np.full((10, 2), np.nan)],
    ids=["too few rows", "1-D", "not finite"],
)
def test_silhouette_refuses_features_that_do_not_fit(features):
    with pytest.raises(ValueError, match="features"):
        feature_silhouette(features, random_proba(10, 2, 0))


@pytest.mark.parametrize(("name", "value"), [("sample_size", 1), ("random_state", None)])
def test_silhouette_refuses_bad_settings(name, value):
    with pytest.raises(ValueError, match=name):
        feature_silhouette(np.zeros((10, 2)), random_proba(10, 2, 0), **{name: value})


# ------------------------------------------------------------------ balance


def test_balance_of_equal_clusters_is_one_and_of_one_cluster_zero():
    assert balance(one_hot(np.arange(12) % 4, 4)) == pytest.approx(1.0)
    assert balance(one_hot(np.zeros(12, dtype=int), 4)) == 0.0


def test_balance_hand_computed():
    shares = np.array([0.75, 0.25])
    assert balance(one_hot([0, 0, 0, 1], 2)) == pytest.approx(-(shares @ np.log(shares)) / math.log(2))
    assert balance(one_hot([0, 1, 0, 1], 4)) == pytest.approx(0.5)  # two of four clusters, equally used


# ------------------------------------------------------------------ input validation


CRITERIA = {
    "stability": lambda proba: stability([proba, proba]),
    "view_agreement": lambda proba: view_agreement(proba, proba),
    "normalized_information": normalized_information,
    "feature_silhouette": lambda proba: feature_silhouette(np.arange(2 * len(proba)).reshape(-1, 2), proba),
    "balance": balance,
}

BAD_PROBA = {
    "1-D": np.array([0.5, 0.5]),
    "3-D": np.full((2, 2, 2), 0.5),
    "no samples": np.zeros((0, 3)),
    "one cluster": np.ones((4, 1)),
    "negative": np.array([[1.5, -0.5], [0.5, 0.5]]),
    "not finite": np.array([[np.nan, 1.0], [0.5, 0.5]]),
    "rows not summing to 1": np.array([[0.5, 0.4], [0.5, 0.5]]),
    "logits": np.array([[2.0, -1.0], [0.3, 0.1]]),
}


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("bad", BAD_PROBA)
def test_every_criterion_refuses_what_is_not_a_distribution_per_row(criterion, bad):
    with pytest.raises(ValueError, match="proba"):
        CRITERIA[criterion](BAD_PROBA[bad])


@pytest.mark.parametrize("criterion", CRITERIA)
def test_every_criterion_takes_float32_softmax_outputs_and_lists(criterion):
    logits = np.random.default_rng(4).normal(scale=5, size=(64, 7)).astype(np.float32)
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert math.isfinite(CRITERIA[criterion](proba))
    assert CRITERIA[criterion](proba.tolist()) == pytest.approx(CRITERIA[criterion](proba))


# ------------------------------------------------------------------ choosing K


def test_select_n_clusters_takes_the_best_and_the_smallest_on_a_tie():
    assert select_n_clusters({2: 0.1, 3: 0.9, 4: 0.5}) == 3
    assert select_n_clusters({np.int64(5): 0.7, np.int64(3): np.float64(0.7), 8: 0.2}) == 3


@pytest.mark.parametrize(
    ("scores", "message"),
    [({}, "at least one"), ({1: 0.5}, "int >= 2"), ({2.0: 0.5}, "int >= 2"), ({3: math.nan}, "finite")],
)
def test_select_n_clusters_refuses_bad_scores(scores, message):
    with pytest.raises(ValueError, match=message):
        select_n_clusters(scores)
