"""The device: one asked for that this machine lacks is named."""

import numpy as np
import pytest
import torch


def images(n=12, shape=(8, 8, 3), dtype=np.uint8):
    return np.random.default_rng(0).integers(0, 255, size=(n, *shape)).astype(dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda(tiny):
    with pytest.raises(ValueError, match="CUDA is not available"):
        tiny(device="cuda").fit(images())
