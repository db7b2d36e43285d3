"""The confusion matrix on the Agg backend: its cells in the order of the best map of classes to clusters,
against a brute-force search, and every input error."""

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from imc_cluster import plot_confusion_matrix


def _brute_force(table: np.ndarray) -> tuple[list[int], list[tuple[int, int]], int]:
    """The best one-to-one map of classes (rows) to clusters (columns) of ``table``, found by trying every
    one, as the expected column order (matched clusters in the order of their classes, then the others),
    the matched cells (row, position in that order) and the matched total. The best map must be unique,
    so that the order is well defined."""
    n_classes, n_clusters = table.shape
    size = min(n_classes, n_clusters)
    maps = [
        list(zip(rows, columns))
        for rows in itertools.combinations(range(n_classes), size)
        for columns in itertools.permutations(range(n_clusters), size)
    ]
    totals = sorted((sum(table[r, c] for r, c in pairs), i) for i, pairs in enumerate(maps))
    assert totals[-1][0] > totals[-2][0], "the test data must have one best map"
    best = sorted(maps[totals[-1][1]])
    order = [c for _, c in best] + [c for c in range(n_clusters) if c not in {c for _, c in best}]
    return order, [(r, order.index(c)) for r, c in best], totals[-1][0]


def _noisy_clustering(n_classes: int, n_clusters: int, seed: int, names=None):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, 300)
    hidden = rng.permutation(max(n_classes, n_clusters))[:n_classes] % n_clusters
    y_pred = hidden[y_true]
    noisy = rng.random(300) < 0.3
    y_pred[noisy] = rng.integers(0, n_clusters, noisy.sum())
    return (y_true, y_pred) if names is None else (np.asarray(names[0])[y_true], np.asarray(names[1])[y_pred])


@pytest.mark.parametrize("n_classes, n_clusters", [(4, 4), (3, 5), (5, 3), (2, 6)])
@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
def test_confusion_matrix_cells_follow_the_best_map(n_classes, n_clusters, normalize, tmp_path, saves_png):
    y_true, y_pred = _noisy_clustering(n_classes, n_clusters, seed=n_classes * 10 + n_clusters)
    union = range(max(n_classes, n_clusters))
    table = confusion_matrix(y_true, y_pred, labels=union)[:n_classes, :n_clusters]
    order, cells, best = _brute_force(table)
    counts = table[:, order]
    expected = {
        None: counts,
        "true": counts / counts.sum(axis=1, keepdims=True),
        "pred": counts / counts.sum(axis=0, keepdims=True),
        "all": counts / counts.sum(),
    }[normalize]
    ax = plot_confusion_matrix(y_true, y_pred, normalize=normalize)
    np.testing.assert_allclose(ax.images[0].get_array(), expected, rtol=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(c) for c in order]
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(c) for c in range(n_classes)]
    assert ax.get_title() == f"ACC {best / len(y_true):.3f}"
    assert sorted((round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in ax.patches) == cells
    if n_clusters >= n_classes:
        assert cells == [(i, i) for i in range(n_classes)]  # the diagonal
    assert [t.get_text() for t in ax.texts] == [
        f"{v:d}" if normalize is None else f"{v:.2f}" for v in expected.ravel()
    ]
    if normalize is None:
        saves_png(ax.figure, tmp_path / "confusion.png")


def test_confusion_matrix_of_string_labels_and_class_names():
    classes, clusters = ["cat", "dog", "emu"], ["k1", "k2", "k3", "k4"]
    y_true, y_pred = _noisy_clustering(3, 4, seed=7, names=(classes, clusters))
    table = confusion_matrix(y_true, y_pred, labels=classes + clusters)[:3, 3:]
    order, _, _ = _brute_force(table)
    ax = plot_confusion_matrix(y_true, y_pred, class_names=["Cat", "Dog", "Emu"])
    np.testing.assert_array_equal(ax.images[0].get_array(), table[:, order])
    assert [t.get_text() for t in ax.get_xticklabels()] == [clusters[c] for c in order]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Cat", "Dog", "Emu"]


def test_confusion_matrix_on_given_axes_and_annotation_switch():
    _, (left, right) = plt.subplots(1, 2)
    y = np.arange(25)
    assert plot_confusion_matrix(y, y, ax=right) is right
    assert len(right.texts) == 0 and not left.images  # 25 classes: no numbers unless asked
    assert len(plot_confusion_matrix(y, y, annotate=True).texts) == 625
    assert len(plot_confusion_matrix([0, 1], [1, 0], annotate=False).texts) == 0
    np.testing.assert_array_equal(right.images[0].get_array(), np.eye(25))


def test_confusion_matrix_of_a_real_fit(fitted):
    est, images, y, _ = fitted
    ax = plot_confusion_matrix(y, est.predict(images))
    array = np.asarray(ax.images[0].get_array())
    outlined = [array[round(p.get_y() + 0.5), round(p.get_x() + 0.5)] for p in ax.patches]
    assert array.sum() == len(y)
    # the last history record scored the returned model on the same images
    assert sum(outlined) / len(y) == pytest.approx(est.history_[-1]["acc"])
    assert ax.get_title() == f"ACC {est.history_[-1]['acc']:.3f}"


@pytest.mark.parametrize(
    "y_true, y_pred, kwargs, error, message",
    [
        ([0, -1, 1], [0, 1, 1], {}, ValueError, "y_true contains negative labels such as -1"),
        ([0, 1, 1], [0, 1, -1], {}, ValueError, "y_pred contains negative labels"),
        ([0, 1, 1.0], [0, 1, -1.0], {}, ValueError, "y_pred contains negative labels"),
        ([0, 1], [0, 1, 1], {}, ValueError, "different lengths"),
        ([], [], {}, ValueError, "y_true is empty"),
        ([[0, 1]], [[0, 1]], {}, ValueError, "1-D"),
        ([0, np.nan], [0, 1], {}, ValueError, "NaN"),
        ([0, 1], [None, "a"], {}, TypeError, "cannot be sorted"),
        ([0, 1], [0j, 1j], {}, TypeError, "dtype complex"),
        ([0, 1], [0, 1], {"normalize": "rows"}, ValueError, "normalize must be one of"),
        ([0, 1], [0, 1], {"class_names": ["a"]}, ValueError, "1 names for 2 classes"),
        ([0, 1], [0, 1], {"class_names": "ab"}, TypeError, "not a string"),
    ],
)
def test_confusion_matrix_errors(y_true, y_pred, kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_confusion_matrix(y_true, y_pred, **kwargs)
