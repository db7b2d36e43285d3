"""predict_folder with a frozen encoder's model reads the features its fit kept, by image content."""

import numpy as np

from imc_cluster import predict_folder


def test_predict_folder_on_the_fit_photos_runs_no_encoder(frozen_fit, frozen_photos, monkeypatch, tmp_path):
    fitted = frozen_fit()

    def run(*args, **kwargs):
        raise AssertionError("the encoder ran")

    monkeypatch.setattr(fitted.model_.encoder, "forward", run)
    prediction = predict_folder(fitted, frozen_photos[0], tmp_path / "out", batch_size=5)
    np.testing.assert_array_equal(prediction.clusters, fitted.labels_)
    assert (tmp_path / "out" / "clusters.csv").exists()
