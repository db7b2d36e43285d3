"""Metrics on hand-computed cases."""

import numpy as np
import pytest

from imc_cluster.metrics import cluster_accuracy, cluster_mapping, evaluate_clustering, top_k_cluster_accuracy


def test_accuracy_is_invariant_to_renaming():
    assert cluster_accuracy([0, 0, 1, 1, 2, 2], [2, 2, 0, 0, 1, 1]) == 1.0


def test_accuracy_hand_computed():
    # clusters: a={0,0,1}, b={1,1,2}, c={2}; best map a->0, b->1, c->2 gets 2 + 2 + 1 = 5 of 7
    y_true = [0, 0, 1, 1, 1, 2, 2]
    y_pred = ["a", "a", "a", "b", "b", "b", "c"]
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 7)
    assert cluster_mapping(y_true, y_pred) == {"a": 0, "b": 1, "c": 2}


def test_accuracy_is_one_to_one():
    # everything in one cluster: only one class can be matched
    assert cluster_accuracy([0, 0, 1, 1], [5, 5, 5, 5]) == 0.5
    # more clusters than classes: the surplus cluster counts as wrong
    assert cluster_accuracy([0, 0, 0, 1], [0, 0, 1, 2]) == 0.75


def test_top_k_accuracy():
    y_true = np.array([0, 0, 1, 1])
    proba = np.array([[0.7, 0.2, 0.1], [0.6, 0.1, 0.3], [0.1, 0.8, 0.1], [0.5, 0.1, 0.4]])
    # top-1 clusters 0, 0, 1, 0 -> map 0->0, 1->1: 3 of 4 right
    assert top_k_cluster_accuracy(y_true, proba, k=1) == 0.75
    # sample 3's matched cluster (1) is third in its ranking: top-2 still misses it, top-3 has it
    assert top_k_cluster_accuracy(y_true, proba, k=2) == 0.75
    assert top_k_cluster_accuracy(y_true, proba, k=3) == 1.0


def test_evaluate_clustering_returns_all_metrics():
    y = [0, 0, 1, 1]
    result = evaluate_clustering(y, [1, 1, 0, 0], proba=np.eye(2)[[1, 1, 0, 0]], top_k=1)
    assert result == {"acc": 1.0, "nmi": 1.0, "ari": 1.0, "top1_acc": 1.0}
    independent = evaluate_clustering([0, 1, 0, 1], [0, 0, 1, 1])
    assert independent["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert independent["ari"] == pytest.approx(-0.5)  # hand-computed: index 0, expected 2/3, max 2


@pytest.mark.parametrize(
    "args, message",
    [
        (([0, 1], [0]), "different lengths"),
        (([], []), "empty"),
        (([[0, 1]], [[0, 1]]), "1-D"),
    ],
)
def test_metric_errors(args, message):
    with pytest.raises(ValueError, match=message):
        cluster_accuracy(*args)


def test_top_k_needs_proba_and_valid_k():
    with pytest.raises(ValueError, match="proba"):
        evaluate_clustering([0, 1], [0, 1], top_k=5)
    with pytest.raises(ValueError, match="k must be"):
        top_k_cluster_accuracy([0, 1], np.eye(2), k=3)
