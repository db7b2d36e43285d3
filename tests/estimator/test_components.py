"""The components of a fit from the estimator's parameters: the training precision and activation
checkpointing."""

import pytest
import torch

from imc_cluster.estimator import components


def test_precision_and_checkpointing_options(tiny, rgb_images):
    images, _ = rgb_images
    est = tiny(activation_checkpointing=True, precision="float32").fit(images)
    assert est.model_.encoder.checkpointing and components.training_dtype("float32", est.device_) is None
    assert components.training_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert components.training_dtype("auto", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="precision"):
        tiny(precision="float16").fit(images)


def test_networks_on_frozen_features_train_in_the_features_dtype():
    cpu = torch.device("cpu")
    for precision in ("auto", "bfloat16", "float32"):
        wanted = components.extraction_dtype(precision, cpu)
        assert components.training_dtype(precision, cpu, frozen=True) == wanted
    assert components.training_dtype("float32", cpu, frozen=True) is None
    assert components.training_dtype("bfloat16", cpu, frozen=True) == torch.bfloat16
