"""Numbers as scikit-learn takes them: every parameter that takes a Python number takes a numpy one (and
every tuple parameter a numpy array), and whatever numpy types a user passes, a checkpoint holds plain data
only and loads again."""

import math

import numpy as np
import pytest

from imc_cluster import IMCSwAVClustering
from imc_cluster.checkpoints.files import load_checkpoint
from imc_cluster.core.numbers import to_python
from imc_cluster.estimator.params import PARAMETER_CONSTRAINTS

#: a value for every parameter that takes numbers, small enough for a quick fit of 48 12x12 images
PLAIN = dict(
    n_clusters=3,
    image_shape=(12, 12, 3),
    backbone_width=4,
    n_prototypes=10,
    projection_dim=8,
    head_hidden_dim=16,
    n_heads=2,
    max_time=600.0,
    n_large_crops=2,
    n_small_crops=2,
    large_crop_size=10,
    small_crop_size=(6, 5),
    large_crop_scale=(0.3, 1.0),
    small_crop_scale=(0.1, 0.4),
    flip_prob=0.5,
    color_jitter=(0.4, 0.4, 0.4, 0.1),
    color_jitter_prob=0.8,
    grayscale_prob=0.25,
    normalization=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    temperature=0.1,
    sinkhorn_epsilon=0.05,
    sinkhorn_iterations=3,
    marginal_weight=4.0,
    logit_penalty=0.01,
    logit_threshold=5.0,
    batch_size=16,
    max_epochs=2,
    learning_rate=5e-4,
    betas=(0.8, 0.999),
    weight_decay=1e-5,
    warmup_updates=2,
    lr_milestones=(1,),
    lr_gamma=0.4,
    bn_recalibration_batches=1,
    random_state=0,
    verbose=0,
)
BOOLEANS = ("warm_start", "compile", "activation_checkpointing")


def as_numpy(value, integer_type=np.int64, float_type=np.float32):
    """``value`` with numpy scalars for numbers and numpy arrays for tuples of numbers."""
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        return integer_type(value)
    if isinstance(value, float):
        return float_type(value)
    if isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
        return np.array(value)
    if isinstance(value, tuple):
        return tuple(as_numpy(v, integer_type, float_type) for v in value)
    return value


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (48, 12, 12, 3), dtype=np.uint8).reshape(48, -1)


def plain_data(value) -> bool:
    """Whether ``value`` holds only Python's plain types (the checkpoint's params section)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(plain_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_data(v) for k, v in value.items())
    return False


def test_the_list_covers_every_numeric_parameter():
    numeric = {
        name
        for name, constraints in PARAMETER_CONSTRAINTS.items()
        if any(
            getattr(c, "type", None) in (int, float)
            or "Interval" in type(c).__name__
            or c in ("array-like", "verbose", "random_state")
            for c in constraints
        )
    }
    assert numeric <= set(PLAIN) | set(BOOLEANS), numeric - set(PLAIN)


@pytest.mark.parametrize(
    "integer_type, float_type", [(np.int64, np.float32), (np.int32, np.float64), (np.uint8, np.float16)]
)
def test_numpy_values_of_every_parameter_fit_save_and_load(images, tmp_path, integer_type, float_type):
    params = {name: as_numpy(value, integer_type, float_type) for name, value in PLAIN.items()}
    params.update({name: np.bool_(False) for name in BOOLEANS})
    est = IMCSwAVClustering(**params, checkpoint_path=tmp_path / "run.cpt").fit(images)
    reference = IMCSwAVClustering(**PLAIN).fit(images)
    if float_type is np.float64 and integer_type is not np.uint8:  # the same numbers, read as Python ones
        np.testing.assert_array_equal(est.labels_, reference.labels_)
    for path in (tmp_path / "run.cpt", tmp_path / "saved.cpt"):
        est.save(tmp_path / "saved.cpt")
        content = load_checkpoint(path)
        assert plain_data(content["params"]), content["params"]
        loaded = IMCSwAVClustering.load(path)
        np.testing.assert_array_equal(loaded.predict(images), est.predict(images))


def test_a_grid_search_over_numpy_grids(images):
    from sklearn.model_selection import GridSearchCV

    grid = {
        "n_clusters": np.arange(2, 4),
        "learning_rate": np.array([1e-3, 5e-4]),
        "betas": [np.array([0.8, 0.999]), np.array([0.9, 0.999])],
    }
    params = {k: v for k, v in PLAIN.items() if k not in grid}
    search = GridSearchCV(IMCSwAVClustering(**{**params, "max_epochs": 1}), grid, cv=2).fit(images)
    assert set(search.best_params_) == set(grid)


def test_history_records_annotated_with_numpy_values_save_as_plain_data(images, tmp_path):
    def annotate(est, record):
        record.update(
            score=np.float32(0.5),
            count=np.int64(3),
            flag=np.bool_(True),
            sizes=np.array([1, 2]),
            note="text",
            nothing=None,
            obj=object(),
        )

    est = IMCSwAVClustering(**PLAIN).fit(images, callbacks=[annotate])
    est.save(tmp_path / "m.cpt")
    record = IMCSwAVClustering.load(tmp_path / "m.cpt").history_[-1]
    assert record["score"] == 0.5 and type(record["score"]) is float
    assert record["count"] == 3 and type(record["count"]) is int
    assert record["flag"] is True and record["sizes"] == [1, 2] and record["note"] == "text"
    assert record["nothing"] is None and record["obj"].startswith("<object object")


def test_to_python_reaches_every_depth():
    value = {"a": (np.int8(1), [np.float16(0.5), np.array([[1, 2]])]), np.str_("b"): np.bool_(False)}
    plain = to_python(value)
    assert plain == {"a": (1, [0.5, [[1, 2]]]), "b": False}
    assert type(plain["a"][0]) is int and type(plain["a"][1][0]) is float and type(plain["b"]) is bool
    assert math.isclose(to_python(np.float32(0.1)), 0.1, rel_tol=1e-6)


def test_callbacks_take_numpy_numbers(tmp_path):
    from imc_cluster import EarlyStopping, TensorBoard

    stop = EarlyStopping(patience=np.int64(2), min_delta=np.float32(0.1))
    assert type(stop.patience) is int and type(stop.min_delta) is float
    TensorBoard(log_dir=tmp_path / "tb", purge=np.bool_(False))
    for bad in (np.float64(1.5), np.bool_(True), True):
        with pytest.raises(ValueError, match="patience"):
            EarlyStopping(patience=bad)


def test_the_folder_api_takes_numpy_numbers(tmp_path):
    from PIL import Image

    from imc_cluster import iter_image_batches, load_image_folder

    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    data = load_image_folder(tmp_path, image_size=np.int64(8), channels=np.int64(3))
    assert data.images.shape == (5, 8, 8, 3)
    data = load_image_folder(tmp_path, image_size=(np.int32(6), np.uint16(9)))
    assert data.images.shape[1:3] == (6, 9)
    batches = list(iter_image_batches(tmp_path, image_size=np.int64(8), batch_size=np.int64(2)))
    assert [len(b.paths) for b in batches] == [2, 2, 1]


def test_predict_folder_and_the_plots_take_numpy_numbers(tmp_path):
    from PIL import Image

    from imc_cluster import (
        plot_cluster_gallery,
        plot_confusion_matrix,
        predict_folder,
        top_k_cluster_accuracy,
    )

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    est = IMCSwAVClustering(
        **{**PLAIN, "image_shape": None, "large_crop_size": None, "small_crop_size": None, "batch_size": 12}
    ).fit(images)
    for i in range(6):
        Image.fromarray(images[i]).save(tmp_path / f"{i}.png")
    result = predict_folder(est, tmp_path, tmp_path / "out", batch_size=np.int64(4), tile=np.int64(16))
    assert result.n_files == 6
    pytest.importorskip("matplotlib")
    labels = est.predict(images)
    plot_cluster_gallery(images, labels, per_cluster=np.int64(2))
    plot_confusion_matrix(labels, labels)
    proba = est.predict_proba(images)
    assert top_k_cluster_accuracy(labels, proba, k=np.int64(2)) == 1.0
