"""The pictures of imc_cluster.plots on the Agg backend: what each figure holds (which images, which
counts, which curve values) against independent computations, and every input error."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from imc_cluster import (IMCSwAVClustering, cli, plot_cluster_gallery, plot_confusion_matrix,  # noqa: E402
                         plot_training_curves)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _saves_png(figure, path: Path) -> None:
    figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(path).shape[0] > 50


# ----------------------------------------------------------------------------------------------- gallery
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
        "float16 grey one channel": ((grey / 255).astype(np.float16)[..., None],
                                     (grey / 255).astype(np.float16), (0, 1)),
        "longdouble rgb": ((rgb / 255.0).astype(np.longdouble), rgb / 255.0, None),
    }


def _rows(figure, per_cluster: int) -> list[list]:
    return [figure.axes[i:i + per_cluster] for i in range(0, len(figure.axes), per_cluster)]


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


def test_gallery_chosen_clusters_in_order_with_empty_rows(tmp_path):
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
    _saves_png(figure, tmp_path / "gallery.png")


def test_gallery_of_a_real_fit(fitted):
    est, images, _, _ = fitted
    proba = est.predict_proba(images)
    figure = plot_cluster_gallery(images, est.predict(images), proba, per_cluster=3)
    labels = est.predict(images)
    for row, cluster in zip(_rows(figure, 3), np.unique(labels)):
        expected = _expected_members(labels, proba[np.arange(len(labels)), labels], cluster, 3)
        np.testing.assert_array_equal(np.stack([ax.images[0].get_array() for ax in row if ax.images]),
                                      images[expected])


GOOD = np.zeros((4, 3, 3), np.uint8)


@pytest.mark.parametrize("args, kwargs, error, message", [
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
    ((GOOD, [0] * 4), {"per_cluster": 0}, ValueError, "per_cluster must be at least 1"),
    ((GOOD, [0] * 4), {"per_cluster": 2.0}, TypeError, "per_cluster must be an int"),
    ((GOOD, [0] * 4), {"per_cluster": True}, TypeError, "per_cluster must be an int"),
    ((GOOD, [0] * 4), {"clusters": []}, ValueError, "clusters is empty"),
    ((GOOD, [0] * 4), {"clusters": [0, 0]}, ValueError, "more than once"),
    ((GOOD, ["a"] * 4), {"clusters": "a"}, TypeError, "not a string"),
])
def test_gallery_errors(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_cluster_gallery(*args, **kwargs)


# -------------------------------------------------------------------------------------- confusion matrix
def _brute_force(table: np.ndarray) -> tuple[list[int], list[tuple[int, int]], int]:
    """The best one-to-one map of classes (rows) to clusters (columns) of ``table``, found by trying every
    one, as the expected column order (matched clusters in the order of their classes, then the others),
    the matched cells (row, position in that order) and the matched total. The best map must be unique,
    so that the order is well defined."""
    n_classes, n_clusters = table.shape
    size = min(n_classes, n_clusters)
    maps = [list(zip(rows, columns)) for rows in itertools.combinations(range(n_classes), size)
            for columns in itertools.permutations(range(n_clusters), size)]
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
def test_confusion_matrix_cells_follow_the_best_map(n_classes, n_clusters, normalize, tmp_path):
    y_true, y_pred = _noisy_clustering(n_classes, n_clusters, seed=n_classes * 10 + n_clusters)
    union = range(max(n_classes, n_clusters))
    table = confusion_matrix(y_true, y_pred, labels=union)[:n_classes, :n_clusters]
    order, cells, best = _brute_force(table)
    counts = table[:, order]
    expected = {None: counts, "true": counts / counts.sum(axis=1, keepdims=True),
                "pred": counts / counts.sum(axis=0, keepdims=True), "all": counts / counts.sum()}[normalize]
    ax = plot_confusion_matrix(y_true, y_pred, normalize=normalize)
    np.testing.assert_allclose(ax.images[0].get_array(), expected, rtol=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(c) for c in order]
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(c) for c in range(n_classes)]
    assert ax.get_title() == f"ACC {best / len(y_true):.3f}"
    assert sorted((round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in ax.patches) == cells
    if n_clusters >= n_classes:
        assert cells == [(i, i) for i in range(n_classes)]  # the diagonal
    assert [t.get_text() for t in ax.texts] == [f"{v:d}" if normalize is None else f"{v:.2f}"
                                                for v in expected.ravel()]
    if normalize is None:
        _saves_png(ax.figure, tmp_path / "confusion.png")


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
    figure, (left, right) = plt.subplots(1, 2)
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


@pytest.mark.parametrize("y_true, y_pred, kwargs, error, message", [
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
])
def test_confusion_matrix_errors(y_true, y_pred, kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_confusion_matrix(y_true, y_pred, **kwargs)


# ------------------------------------------------------------------------------------- training curves
def _fake_history() -> list[dict]:
    """Eight epochs; only every other one evaluated, the first two without mi/reg, one lr missing."""
    rng = np.random.default_rng(5)
    records = []
    for epoch in range(1, 9):
        record = {"loss": float(rng.normal()), "swav": float(rng.random()), "epoch": epoch, "seconds": 1.5,
                  "updates": 3 * epoch}
        if epoch > 2:
            record.update(mi=float(-rng.random()), reg=float(rng.random()) / 10)
        if epoch != 4:
            record["lr"] = 1e-3 * 0.4 ** (epoch // 3)
        if epoch % 2 == 0:
            record.update(acc=float(rng.random()), nmi=float(rng.random()), ari=float(rng.random()))
        records.append(record)
    return records


def _lines(figure) -> dict[str, tuple[str, list, list]]:
    return {line.get_label(): (ax.get_title(), list(line.get_xdata()), list(line.get_ydata()))
            for ax in figure.axes for line in ax.get_lines()}


def _expected_lines(records: list[dict], keys, titles) -> dict:
    return {key: (titles[key], [r["epoch"] for r in records if r.get(key) is not None],
                  [r[key] for r in records if r.get(key) is not None]) for key in keys}


TITLES = {**dict.fromkeys(["loss", "swav", "mi", "reg"], "losses"), "lr": "learning rate",
          **dict.fromkeys(["acc", "nmi", "ari"], "scores")}


def test_curves_hold_the_history_values(tmp_path):
    records = _fake_history()
    figure = plot_training_curves(records)
    assert [ax.get_title() for ax in figure.axes] == ["losses", "learning rate", "scores"]
    lines = _lines(figure)
    assert lines == _expected_lines(records, TITLES, TITLES)
    assert len(lines["acc"][1]) == 4 and len(lines["mi"][1]) == 6 and len(lines["lr"][1]) == 7
    _saves_png(figure, tmp_path / "curves.png")


def test_curves_of_chosen_metrics_on_given_axes():
    records = _fake_history()
    figure, axes = plt.subplots(2, 2)
    assert plot_training_curves(records, metrics=["nmi", "seconds", "loss", "updates"], axes=axes) is figure
    assert [ax.get_title() for ax in axes.ravel()] == ["losses", "scores", "seconds", "updates"]
    assert _lines(figure) == _expected_lines(records, ["loss", "nmi", "seconds", "updates"],
                                             {**TITLES, "seconds": "seconds", "updates": "updates"})
    one = plot_training_curves(records, metrics="lr")
    assert [ax.get_title() for ax in one.axes] == ["learning rate"]


def test_curves_need_one_axes_per_panel():
    ax = plt.figure().add_subplot()
    with pytest.raises(ValueError, match=r"1 Axes for 2 panels \(\['losses', 'learning rate'\]\)"):
        plot_training_curves([{"loss": 1.0, "lr": 0.1}], axes=[ax])
    assert plot_training_curves([{"loss": 1.0, "lr": 0.1}], metrics="lr", axes=ax) is ax.figure
    assert _lines(ax.figure) == {"lr": ("learning rate", [1], [0.1])}


def test_curves_without_epochs_count_the_records():
    records = [{"loss": 3.0}, {"loss": 2.0, "epoch": 7}, {"loss": 1.0}]
    assert _lines(plot_training_curves(records))["loss"] == ("losses", [1, 2, 3], [3.0, 2.0, 1.0])


def test_curves_read_the_cli_history_file_and_a_fitted_estimator(fitted):
    est, _, _, output_dir = fitted
    lines = _lines(plot_training_curves(est))
    assert set(lines) == {"loss", "swav", "mi", "reg", "lr", "acc", "nmi", "ari"}
    assert lines == _expected_lines(est.history_, lines, TITLES)
    assert _lines(plot_training_curves(output_dir / "history.jsonl")) == lines
    assert _lines(plot_training_curves(str(output_dir))) == lines  # the CLI's output folder


def test_curves_read_json_nan_null_and_blank_lines(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"epoch": 1, "loss": 2.5, "acc": NaN}\n\n{"epoch": 2, "loss": 2.0, "acc": null}\n')
    lines = _lines(plot_training_curves(path))
    assert lines["loss"] == ("losses", [1, 2], [2.5, 2.0])
    assert lines["acc"][1] == [1] and np.isnan(lines["acc"][2][0])


def test_curves_of_an_unfitted_estimator():
    with pytest.raises(NotFittedError, match="not fitted"):
        plot_training_curves(IMCSwAVClustering())


@pytest.mark.parametrize("history, kwargs, error, message", [
    ([], {}, ValueError, "history is empty"),
    ({"loss": 1.0}, {}, TypeError, "got dict"),
    (3, {}, TypeError, "list of epoch records"),
    ([{"loss": 1.0}, [1.0]], {}, TypeError, "record 2 is a list"),
    ([{"loss": 1.0}, {"loss": "high"}], {}, TypeError, "record 2: loss is 'high', not a number"),
    ([{"loss": True}], {}, TypeError, "not a number"),
    ([{"seconds": 1.0}], {}, ValueError, "none of the keys plotted by default"),
    ([{"loss": 1.0}], {"metrics": ["loss", "acc"]}, ValueError, r"history has no \['acc'\]"),
    ([{"loss": 1.0}], {"metrics": []}, ValueError, "metrics is empty"),
    ([{"loss": 1.0}], {"metrics": 3}, TypeError, "metrics must be a history key or a list"),
])
def test_curves_errors(history, kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_training_curves(history, **kwargs)


@pytest.mark.parametrize("content, error, message", [
    (b'{"loss": 1.0}\n{"loss": 2.0\n', ValueError, "line 2: not a JSON record"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe", ValueError, "not a text file"),
    (b"[1, 2]\n", TypeError, "record 1 is a list"),
    (b"", ValueError, "history is empty"),
])
def test_curves_file_errors(tmp_path, content, error, message):
    path = tmp_path / "history.jsonl"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        plot_training_curves(path)


def test_curves_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        plot_training_curves(tmp_path / "nothing.jsonl")
    with pytest.raises(FileNotFoundError):
        plot_training_curves(tmp_path)  # a folder without history.jsonl


# ------------------------------------------------------------------------------------------- packaging
@pytest.mark.parametrize("draw", [
    lambda: plot_cluster_gallery(GOOD, [0] * 4),
    lambda: plot_confusion_matrix([0, 1], [1, 0]),
    lambda: plot_training_curves([{"loss": 1.0}]),
])
def test_missing_matplotlib_names_the_extra(monkeypatch, draw):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'imc-cluster\[plots\]'"):
        draw()


def test_importing_the_package_does_not_import_matplotlib():
    code = ("import sys, imc_cluster; from imc_cluster import plot_training_curves; "
            "print('matplotlib' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------- fixture
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One tiny real fit on 96 digits (one epoch, evaluated), its history written by the CLI's epoch log:
    (estimator, uint8 images, true labels, output folder)."""
    torch.set_num_threads(2)
    digits = load_digits()
    images = (digits.images[:96] * 15.9).astype(np.uint8)
    y = digits.target[:96]
    output_dir = tmp_path_factory.mktemp("run")
    est = IMCSwAVClustering(n_clusters=10, backbone_width=4, n_prototypes=10, projection_dim=8,
                            head_hidden_dim=16, batch_size=48, max_epochs=1, warmup_updates=2,
                            bn_recalibration_batches=2, random_state=0, device="cpu")
    est.fit(images, eval_set=(images, y), callbacks=[cli.EpochLog(output_dir, 1)])
    return est, images, y, output_dir
