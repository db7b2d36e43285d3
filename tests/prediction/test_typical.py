"""The most typical images of every cluster, kept while predicting, and their picture."""

import numpy as np
import pytest

from imc_cluster.prediction.typical import PADDING, TypicalImages, gallery_image


def test_typical_images_are_the_most_confident_whatever_the_batches():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (50, 4, 5, 3), dtype=np.uint8)
    clusters = rng.integers(0, 4, 50)
    confidence = rng.choice([0.3, 0.5, 0.7, 0.9], 50)  # many ties: the first seen wins
    paths = [f"{i}.png" for i in range(50)]
    results = []
    for cuts in ([50], [1] * 50, [7, 13, 30]):
        typical, start = TypicalImages(5, per_cluster=3), 0
        for size in cuts:
            part = slice(start, start + size)
            typical.update(images[part], clusters[part], confidence[part], paths[part])
            start += size
        results.append(typical)
    for cluster in range(5):
        members = np.flatnonzero(clusters == cluster)
        best = members[np.argsort(-confidence[members], kind="stable")[:3]]
        for typical in results:
            assert typical.counts[cluster] == len(members)
            assert typical.paths(cluster) == [paths[i] for i in best]
            np.testing.assert_array_equal(typical.images(cluster), images[best].reshape(-1, 4, 5, 3))
            np.testing.assert_array_equal(typical.confidence(cluster), confidence[best])
    assert results[0].images(4).shape == (0, 4, 5, 3)


@pytest.mark.parametrize(
    "update, message",
    [
        (lambda t: t.update(np.zeros((2, 4, 4, 3), np.float32), [0, 1], [0.5, 0.5]), "uint8"),
        (lambda t: t.update(np.zeros((2, 4, 4, 2), np.uint8), [0, 1], [0.5, 0.5]), "uint8"),
        (lambda t: t.update(np.zeros((2, 4, 4, 3), np.uint8), [0, 3], [0.5, 0.5]), r"ints in \[0, 3\)"),
        (lambda t: t.update(np.zeros((2, 4, 4, 3), np.uint8), [0, -1], [0.5, 0.5]), r"ints in \[0, 3\)"),
        (lambda t: t.update(np.zeros((2, 4, 4, 3), np.uint8), [0.0, 1.0], [0.5, 0.5]), "ints"),
        (lambda t: t.update(np.zeros((2, 4, 4, 3), np.uint8), [0], [0.5, 0.5]), "one entry per image"),
        (lambda t: t.update(np.zeros((2, 4, 4, 3), np.uint8), [0, 1], [0.5, np.nan]), "finite"),
        (lambda t: t.update(np.zeros((1, 4, 4, 3), np.uint8), [0], [0.5], ["a", "b"]), "one entry per image"),
        (
            lambda t: [
                t.update(np.zeros((1, 4, 4, 3), np.uint8), [0], [0.5]),
                t.update(np.zeros((1, 5, 4, 3), np.uint8), [0], [0.5]),
            ],
            "earlier ones",
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


def test_gallery_draws_one_row_per_non_empty_cluster_most_confident_first():
    colours = np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0]], np.uint8)
    images = np.broadcast_to(colours[:, None, None], (3, 6, 10, 3))
    typical = TypicalImages(4, per_cluster=2)
    typical.update(images, [2, 0, 2], [0.4, 0.9, 0.8])  # cluster 2: green (0.8) before red (0.4)
    picture = np.asarray(gallery_image(typical, tile=20))
    assert picture.shape[0] == PADDING + 2 * (20 + PADDING)
    left = picture.shape[1] - 2 * (20 + PADDING)
    centre = lambda row, column: picture[PADDING + row * 24 + 10, left + column * 24 + 10]  # noqa: E731
    assert centre(0, 0).tolist() == [0, 0, 255] and centre(0, 1).tolist() == [255, 255, 255]
    assert centre(1, 0).tolist() == [0, 255, 0] and centre(1, 1).tolist() == [255, 0, 0]
    caption = picture[PADDING : PADDING + 20, PADDING : left - PADDING]
    assert (caption < 128).any()  # the cluster's index and size are written
    with pytest.raises(ValueError, match="No cluster holds an image"):
        gallery_image(TypicalImages(2))
    with pytest.raises(ValueError, match="tile must be a positive int"):
        gallery_image(typical, tile=0)
