"""Prediction over a folder of image files: the fitted estimator's predict_proba of the centre-cropped
images, a model of small grey arrays on colour photos, a prediction into its own folder, file names that
are not UTF-8, a folder left as it was, files copied per cluster, and typical images nearest the centre."""

import csv
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from imc_cluster import IMCSwAVClustering, load_image_folder, predict_folder
from imc_cluster.core.cache import CACHE_ENV
from imc_cluster.data.datasets import load_dataset
from imc_cluster.prediction import folder as prediction_folder
from imc_cluster.prediction.typical import PADDING


def test_predict_folder_is_predict_proba_of_the_centre_cropped_images(photos_model, photos):
    estimator = IMCSwAVClustering.load(photos_model[0])
    prediction = predict_folder(estimator, photos, batch_size=4)
    expected = estimator.predict_proba(load_image_folder(photos, 16, channels=3).images)
    np.testing.assert_array_equal(prediction.clusters, expected.argmax(axis=1))
    np.testing.assert_allclose(prediction.confidence, expected.max(axis=1), atol=1e-6)
    assert prediction.checkpoint is None and prediction.n_files == 13 and not prediction.failures
    assert prediction.typical.counts.tolist() == prediction.cluster_sizes.tolist()


def test_a_model_of_small_grey_arrays_clusters_colour_photos(photos, tmp_path, tiny):
    """A model fitted on 8x8 grey arrays (like the digits) takes any image file: centre-cropped, resized to
    8x8 and made grey."""
    images = np.random.default_rng(1).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    tiny(n_clusters=2, max_epochs=1, n_small_crops=0).fit(images).save(tmp_path / "grey.cpt")
    prediction = predict_folder(tmp_path / "grey.cpt", photos, tmp_path / "out", per_cluster=2, tile=16)
    estimator = IMCSwAVClustering.load(tmp_path / "grey.cpt")
    expected = estimator.predict(load_image_folder(photos, 8, channels=1).images)
    np.testing.assert_array_equal(prediction.clusters, expected)
    kept = [prediction.typical.images(k) for k in range(2)]
    assert all(k.shape[1:] == (8, 8, 1) and len(k) <= 2 for k in kept)
    assert prediction.next_clusters.tolist() == (1 - prediction.clusters).tolist()
    with Image.open(tmp_path / "out" / "clusters.png") as picture:
        assert picture.height == PADDING + int((prediction.cluster_sizes > 0).sum()) * (16 + PADDING)


def test_a_prediction_into_its_own_folder_never_reads_its_picture(photos_model, photos, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    first = predict_folder(photos_model[0], folder, folder)
    second = predict_folder(photos_model[0], folder, folder)  # clusters.png is now in the folder
    assert first.n_files == second.n_files == 13 and second.paths == first.paths
    assert "clusters.png" not in second.paths


def test_file_names_that_are_not_utf8_go_through_the_csv_as_their_bytes(photos_model, photos, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    odd = os.fsdecode(b'caf\xe9, "quoted".png')  # Latin-1 bytes, a comma and quotes
    (folder / "photo01.png").rename(folder / odd)
    prediction = predict_folder(photos_model[0], folder, tmp_path / "out")
    assert odd in prediction.paths
    with open(
        tmp_path / "out" / "clusters.csv", newline="", encoding="utf-8", errors="surrogateescape"
    ) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == prediction.paths
    assert (folder / rows[[row["path"] for row in rows].index(odd)]["path"]).is_file()


def _snapshot(folder) -> dict[str, tuple]:
    """Every entry under ``folder``: its relative name, and for a file its size and SHA-256."""
    entries = {}
    for top, folders, files in os.walk(folder):
        for name in folders:
            entries[os.path.relpath(os.path.join(top, name), folder)] = ("folder",)
        for name in files:
            content = open(os.path.join(top, name), "rb").read()  # noqa: SIM115
            entries[os.path.relpath(os.path.join(top, name), folder)] = (
                len(content),
                hashlib.sha256(content).hexdigest(),
            )
    return entries


def test_loading_and_predicting_leave_the_folder_as_it_was(photos_model, photos, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    (folder / "album").mkdir()
    shutil.copy(folder / "photo01.png", folder / "album" / "photo01.png")
    (folder / "broken.png").write_bytes(b"not an image")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env-cache"))
    before = _snapshot(folder)
    with pytest.warns(UserWarning, match="broken.png"):
        load_image_folder(folder, 16)
    with pytest.warns(UserWarning, match="broken.png"):
        load_dataset("folder", folder, image_size=16, cache_dir=tmp_path / "argument-cache")
    predict_folder(photos_model[0], folder, tmp_path / "out", copy_to=tmp_path / "sorted", min_confidence=0.5)
    assert _snapshot(folder) == before
    assert len(list((tmp_path / "env-cache").glob("decoded/photos-*/all-*.npz"))) == 1
    assert len(list((tmp_path / "argument-cache").glob("decoded/photos-*/all-*.npz"))) == 1


def test_files_are_copied_per_cluster_and_the_uncertain_ones_aside(photos_model, photos, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    (folder / "album").mkdir()
    shutil.copy(folder / "photo01.png", folder / "album" / "photo01.png")
    estimator = IMCSwAVClustering.load(photos_model[0])
    threshold = float(np.median(predict_folder(estimator, folder).confidence))
    prediction = predict_folder(
        estimator, folder, tmp_path / "out", copy_to=tmp_path / "sorted", min_confidence=threshold
    )
    uncertain = prediction.confidence < threshold
    assert uncertain.any() and not uncertain.all()
    with open(tmp_path / "out" / "clusters.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["uncertain"] for row in rows] == ["true" if u else "false" for u in uncertain]
    assert [row["placed_as"] for row in rows] == prediction.placement.files
    for row, cluster, doubt in zip(rows, prediction.clusters, uncertain):
        folder_name = "uncertain" if doubt else f"cluster_{cluster}"
        assert row["placed_as"].split("/")[0] == folder_name
        assert (tmp_path / "sorted" / row["placed_as"]).read_bytes() == (folder / row["path"]).read_bytes()
    assert {row["placed_as"].split("/")[1] for row in rows if row["path"].endswith("photo01.png")} == {
        "photo01.png",
        "photo01 (2).png",
    }
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["min_confidence"] == threshold and summary["n_uncertain"] == int(uncertain.sum())
    assert summary["placed"] == {"mode": "copy", "folder": str(tmp_path / "sorted")}


def test_bad_options_are_refused_before_anything_is_read_or_written(photos_model, photos, tmp_path):
    checks = [
        (dict(min_confidence=1.5), ValueError, "min_confidence"),
        (dict(min_confidence="abc"), TypeError, "min_confidence"),
        (dict(copy_to=tmp_path / "a", link_to=tmp_path / "b"), ValueError, "exclude each other"),
        (dict(link_to=photos / "sorted"), ValueError, "inside the image folder"),
    ]
    for options, error, message in checks:
        with pytest.raises(error, match=message):
            predict_folder(photos_model[0] / "not read", photos, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists() and not (photos / "sorted").exists()


def test_the_typical_images_are_nearest_the_centre_not_the_most_confident(
    photos_model, photos, tmp_path, monkeypatch
):
    """A solid square the head is surest of, whose features lie far from the others': not typical."""
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(folder / "square.png")

    def stub(estimator, images):  # features: the pixels' spread, 1; the square is 0, 1
        spread = images.reshape(len(images), -1).std(axis=1)
        features = np.stack([spread, np.ones(len(images))], axis=1)
        confidence = np.where(spread == 0, 0.99, 0.6)
        return features, np.stack([confidence, (1 - confidence) / 2, (1 - confidence) / 2], axis=1)

    monkeypatch.setattr(prediction_folder, "_features_and_proba", stub)
    prediction = predict_folder(photos_model[0], folder, tmp_path / "out", per_cluster=4)
    assert prediction.paths[int(np.argmax(prediction.confidence))] == "square.png"
    assert prediction.cluster_sizes.tolist() == [14, 0, 0]
    assert "square.png" not in prediction.typical.paths(0) and len(prediction.typical.paths(0)) == 4
    expected = load_image_folder(folder, 16, channels=3).images
    by_path = dict(zip(load_image_folder(folder, 16, channels=3).paths, expected))
    np.testing.assert_array_equal(
        prediction.typical.images(0), np.stack([by_path[path] for path in prediction.typical.paths(0)])
    )
