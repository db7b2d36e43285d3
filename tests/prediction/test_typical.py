"""The most typical images of every cluster, chosen by their features while predicting, and their picture."""

import numpy as np
import pytest

from imc_cluster.prediction.typical import PADDING, TypicalImages, gallery_image


def _reader(images: dict):
    """``read(paths)`` of :meth:`TypicalImages.load_images` from a dict of images by path."""
    return lambda paths: (np.stack([images[path] for path in paths]), list(paths))


def _nearest(features, clusters, cluster, per_cluster):
    """The reference: members by cosine similarity to the mean of their normalised features."""
    members = np.flatnonzero(clusters == cluster)
    unit = features[members] / np.linalg.norm(features[members], axis=1, keepdims=True)
    centre = unit.mean(axis=0) / np.linalg.norm(unit.mean(axis=0))
    return members[np.argsort(-(unit @ centre), kind="stable")[:per_cluster]]


def test_typical_images_are_nearest_the_centre_whatever_the_batches():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(50, 6))
    features[40:] = features[10]  # ties: the first seen wins
    clusters = rng.integers(0, 4, 50)
    clusters[40:] = clusters[10]
    images = rng.integers(0, 256, (50, 4, 5, 3), dtype=np.uint8)
    paths = [f"{i}.png" for i in range(50)]
    for cuts in ([50], [1] * 50, [7, 13, 30]):
        typical, start = TypicalImages(5, per_cluster=3), 0
        for size in cuts:
            part = slice(start, start + size)
            typical.update(features[part], clusters[part], paths[part])
            start += size
        typical.load_images(_reader(dict(zip(paths, images))))
        for cluster in range(4):
            best = _nearest(features, clusters, cluster, 3)
            assert typical.counts[cluster] == (clusters == cluster).sum()
            assert typical.paths(cluster) == [paths[i] for i in best]
            np.testing.assert_array_equal(typical.images(cluster), images[best])
            assert (np.diff(typical.similarity(cluster)) <= 0).all()
        assert typical.images(4).shape == (0, 4, 5, 3) and typical.paths(4) == []


def test_the_most_confident_outlier_is_not_typical():
    """Features of a cluster spread around one direction, and one outlier (a solid square, say) far from it:
    whatever its confidence, it is the last of the cluster, not among the typical images."""
    rng = np.random.default_rng(0)
    features = np.array([1.0, 0.0, 0.0]) + 0.1 * rng.normal(size=(9, 3))
    features[4] = [0.0, 0.0, 1.0]  # the outlier
    typical = TypicalImages(1, per_cluster=8)
    typical.update(features, np.zeros(9, np.int64), [str(i) for i in range(9)])
    assert "4" not in typical.paths(0)
    assert typical.similarity(0)[0] > 0.9


def test_images_that_no_longer_read_are_left_out():
    typical = TypicalImages(2, per_cluster=2)
    typical.update(np.eye(3), [0, 0, 1], ["a", "b", "c"])
    with pytest.raises(ValueError, match="call load_images"):
        typical.images(0)
    typical.load_images(lambda paths: (np.zeros((1, 2, 2, 1), np.uint8), ["c"]))
    assert typical.images(0).shape == (0, 2, 2, 1) and typical.paths(0) == []
    assert typical.paths(1) == ["c"] and typical.counts.tolist() == [2, 1]
    with pytest.raises(ValueError, match="uint8"):
        typical.load_images(lambda paths: (np.zeros((1, 2, 2, 2), np.uint8), ["c"]))


@pytest.mark.parametrize(
    "update, message",
    [
        (lambda t: t.update(np.zeros(2), [0, 1], ["a", "b"]), "2-d array"),
        (lambda t: t.update(np.zeros((2, 4)), [0, 3], ["a", "b"]), r"ints in \[0, 3\)"),
        (lambda t: t.update(np.zeros((2, 4)), [0, -1], ["a", "b"]), r"ints in \[0, 3\)"),
        (lambda t: t.update(np.zeros((2, 4)), [0.0, 1.0], ["a", "b"]), "ints"),
        (lambda t: t.update(np.zeros((2, 4)), [0], ["a", "b"]), "one entry per feature vector"),
        (lambda t: t.update(np.zeros((1, 4)), [0], ["a", "b"]), "one entry per feature vector"),
        (lambda t: t.update(np.array([[0.0, np.nan]]), [0], ["a"]), "finite"),
        (
            lambda t: [t.update(np.zeros((1, 4)), [0], ["a"]), t.update(np.zeros((1, 5)), [0], ["b"])],
            "of 4 features, as earlier ones",
        ),
    ],
)
def test_typical_images_refuse_bad_batches(update, message):
    with pytest.raises(ValueError, match=message):
        update(TypicalImages(3))


@pytest.mark.parametrize("arguments", [(0,), (3, 0), (True,), (2.5,)])
def test_typical_images_need_positive_counts(arguments):
    with pytest.raises(ValueError, match="positive int"):
        TypicalImages(*arguments)


def test_gallery_draws_one_row_per_non_empty_cluster_nearest_first():
    colours = np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0], [9, 9, 9]], np.uint8)
    images = np.broadcast_to(colours[:, None, None], (4, 6, 10, 3))
    typical = TypicalImages(4, per_cluster=2)
    # cluster 2: green and grey near its centre, red far from it; cluster 0: blue alone
    features = [[0.0, 1.0], [1.0, 0.0], [1.0, 0.1], [1.0, 0.3]]
    typical.update(features, [2, 0, 2, 2], ["red", "blue", "green", "grey"])
    typical.load_images(_reader(dict(zip(["red", "blue", "green", "grey"], images))))
    assert typical.paths(2) == ["grey", "green"]
    picture = np.asarray(gallery_image(typical, tile=20))
    assert picture.shape[0] == PADDING + 2 * (20 + PADDING)
    left = picture.shape[1] - 2 * (20 + PADDING)
    centre = lambda row, column: picture[PADDING + row * 24 + 10, left + column * 24 + 10]  # noqa: E731
    assert centre(0, 0).tolist() == [0, 0, 255] and centre(0, 1).tolist() == [255, 255, 255]
    assert centre(1, 0).tolist() == [9, 9, 9] and centre(1, 1).tolist() == [0, 255, 0]
    caption = picture[PADDING : PADDING + 20, PADDING : left - PADDING]
    assert (caption < 128).any()  # the cluster's index and size are written
    with pytest.raises(ValueError, match="No cluster holds an image"):
        gallery_image(TypicalImages(2))
    with pytest.raises(ValueError, match="tile must be a positive int"):
        gallery_image(typical, tile=0)
