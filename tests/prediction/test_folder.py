"""Prediction over a folder of image files: the fitted estimator's predict_proba of the centre-cropped
images, a model of small grey arrays on colour photos, a prediction into its own folder, and file names that
are not UTF-8."""

import csv
import os
import shutil

import numpy as np
from PIL import Image

from imc_cluster import IMCSwAVClustering, load_image_folder, predict_folder
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
