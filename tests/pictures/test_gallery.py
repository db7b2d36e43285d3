"""The cluster gallery on the Agg backend: which images each row holds, against independent computations,
and every input error."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from imc_cluster import plot_cluster_gallery


def _image_kinds():
    """Every accepted image form: (images, what each drawn image array should equal, grey value range)."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (40, 5, 6, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    return {
        "uint8 rgb": (rgb, rgb, None),
        "uint8 rgba": (np.concatenate([rgb, grey[..., None]], axis=3),) * 2 + (None,),
        "uint8 grey": (grey, grey, (0, 255)),
        "uint8 one channel": (grey[..., None], grey, (0, 255)),
        "float64 rgb": (rgb / 255.0, rgb / 255.0, None),
        "float32 grey": ((grey / 255).astype(np.float32),) * 2 + ((0, 1),),
        "float16 grey one channel": (
            (grey / 255).astype(np.float16)[..., None],
            (grey / 255).astype(np.float16),
            (0, 1),
        ),
        "longdouble rgb": ((rgb / 255.0).astype(np.longdouble), rgb / 255.0, None),
    }


def _rows(figure, per_cluster: int) -> list[list]:
    return [figure.axes[i : i + per_cluster] for i in range(0, len(figure.axes), per_cluster)]


def _expected_members(labels, score, cluster, count) -> list[int]:
    """The ``count`` highest scores of ``cluster`` by a plain stable sort (no score: data order)."""
    members = [i for i in range(len(labels)) if labels[i] == cluster]
    if score is not None:
        members = sorted(members, key=lambda i: -score[i])
    return members[:count]


@pytest.mark.parametrize("kind", list(_image_kinds()))
@pytest.mark.parametrize("with_confidence", [True, False])
def test_gallery_rows_hold_the_most_confident_images(kind, with_confidence):
    images, shown, grey_range = _image_kinds()[kind]
    rng = np.random.default_rng(2)
    labels = np.r_[np.repeat([0, 1, 2, 5], [12, 3, 20, 5])]
    rng.shuffle(labels)
    confidence = rng.random(40) if with_confidence else None
    figure = plot_cluster_gallery(images, labels, confidence, per_cluster=6)
    rows = _rows(figure, 6)
    assert len(rows) == 4
    for row, cluster in zip(rows, [0, 1, 2, 5]):
        expected = _expected_members(labels, confidence, cluster, 6)
        drawn = [ax.images for ax in row if ax.images]
        assert len(drawn) == len(expected) == min(6, (labels == cluster).sum())
        for axes_images, index in zip(drawn, expected):
            assert len(axes_images) == 1
            np.testing.assert_array_equal(axes_images[0].get_array(), shown[index])
            if grey_range is not None:
                assert axes_images[0].get_cmap().name == "gray"
                assert axes_images[0].get_clim() == grey_range
        assert row[0].get_title(loc="left") == f"cluster {cluster}: n={(labels == cluster).sum()}"
    figure.canvas.draw()  # matplotlib renders every accepted dtype


def test_gallery_reads_the_cluster_column_of_soft_assignments():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (30, 4, 4), dtype=np.uint8)
    proba = rng.dirichlet(np.ones(3), size=30)
    labels = proba.argmax(axis=1)
    figure = plot_cluster_gallery(images, labels, proba, per_cluster=4)
    score = proba[np.arange(30), labels]
    for row, cluster in zip(_rows(figure, 4), range(3)):
        drawn = [ax.images[0].get_array() for ax in row if ax.images]
        expected = _expected_members(labels, score, cluster, 4)
        np.testing.assert_array_equal(np.stack(drawn), images[expected])


def test_gallery_ties_keep_data_order():
    images = np.arange(10, dtype=np.uint8)[:, None, None] * np.ones((1, 3, 3), np.uint8)
    labels = np.zeros(10, dtype=int)
    figure = plot_cluster_gallery(images, labels, np.r_[np.ones(5), np.full(5, 2.0)], per_cluster=7)
    drawn = [int(ax.images[0].get_array()[0, 0]) for ax in figure.axes if ax.images]
    assert drawn == [5, 6, 7, 8, 9, 0, 1]


def test_gallery_chosen_clusters_in_order_with_empty_rows(tmp_path, saves_png):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (12, 4, 4, 3), dtype=np.uint8)
    labels = np.array(list("abcabcabcaaa"))
    figure = plt.figure()
    drawn = plot_cluster_gallery(images, labels, clusters=["c", "zz", "a"], per_cluster=3, figure=figure)
    assert drawn is figure
    rows = _rows(figure, 3)
    titles = [row[0].get_title(loc="left") for row in rows]
    assert titles == ["cluster c: n=3", "cluster zz: n=0", "cluster a: n=6"]
    assert [sum(bool(ax.images) for ax in row) for row in rows] == [3, 0, 3]
    np.testing.assert_array_equal(np.stack([ax.images[0].get_array() for ax in rows[2]]), images[[0, 3, 6]])
    saves_png(figure, tmp_path / "gallery.png")


def test_gallery_of_a_real_fit(fitted):
    est, images, _, _ = fitted
    proba = est.predict_proba(images)
    figure = plot_cluster_gallery(images, est.predict(images), proba, per_cluster=3)
    labels = est.predict(images)
    for row, cluster in zip(_rows(figure, 3), np.unique(labels)):
        expected = _expected_members(labels, proba[np.arange(len(labels)), labels], cluster, 3)
        np.testing.assert_array_equal(
            np.stack([ax.images[0].get_array() for ax in row if ax.images]), images[expected]
        )


GOOD = np.zeros((4, 3, 3), np.uint8)


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((GOOD, [0, 1, 0]), {}, ValueError, "different lengths"),
        ((GOOD.astype(np.int64), [0] * 4), {}, TypeError, "uint8 or floats"),
        ((GOOD.astype(bool), [0] * 4), {}, TypeError, "uint8 or floats"),
        ((GOOD.astype(str), [0] * 4), {}, TypeError, "uint8 or floats"),
        ((np.full((4, 3, 3), 1.5), [0] * 4), {}, ValueError, r"\[0, 1\]"),
        ((np.full((4, 3, 3), -0.1), [0] * 4), {}, ValueError, r"\[0, 1\]"),
        ((np.full((4, 3, 3), np.nan), [0] * 4), {}, ValueError, "finite"),
        ((np.zeros((4, 3, 5, 5), np.uint8), [0] * 4), {}, ValueError, "channel-first"),
        ((np.zeros((4, 9), np.uint8), [0] * 4), {}, ValueError, r"\(N, H, W\)"),
        ((np.zeros((4, 2, 3, 3, 3), np.uint8), [0] * 4), {}, ValueError, r"\(N, H, W\)"),
        ((np.zeros((0, 3, 3), np.uint8), []), {}, ValueError, "labels is empty"),
        ((GOOD, [[0, 1], [0, 1]]), {}, ValueError, "labels must be 1-D"),
        ((GOOD, [0.0, np.nan, 1.0, 1.0]), {}, ValueError, "NaN"),
        ((GOOD, [None, 1, 2, 3]), {}, TypeError, "cannot be sorted"),
        ((GOOD, [0] * 4, [0.5] * 3), {}, ValueError, "confidence must have shape"),
        ((GOOD, [0] * 4, [0.5, np.inf, 0, 0]), {}, ValueError, "confidence contains NaN"),
        ((GOOD, [0] * 4, ["a"] * 4), {}, TypeError, "confidence must be numeric"),
        ((GOOD, ["a"] * 4, np.ones((4, 2))), {}, ValueError, "integer cluster labels"),
        ((GOOD, [0, 1, 2, 2], np.ones((4, 2))), {}, ValueError, "between 0 and 1"),
        ((GOOD, [0] * 4), {"per_cluster": 0}, ValueError, "per_cluster must be a positive int, got 0"),
        ((GOOD, [0] * 4), {"per_cluster": 2.0}, TypeError, "per_cluster must be a positive int, got 2.0"),
        ((GOOD, [0] * 4), {"per_cluster": True}, TypeError, "per_cluster must be a positive int, got True"),
        ((GOOD, [0] * 4), {"clusters": []}, ValueError, "clusters is empty"),
        ((GOOD, [0] * 4), {"clusters": [0, 0]}, ValueError, "more than once"),
        ((GOOD, ["a"] * 4), {"clusters": "a"}, TypeError, "not a string"),
    ],
)
def test_gallery_errors(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_cluster_gallery(*args, **kwargs)
