"""Encoder features of the un-augmented view and of the training views, computed once in batches: every
sample's row holds its evaluation view, then its views group by group, in the dtype of the output."""

import numpy as np
import pytest
import torch
from torch import nn

from imc_cluster.core.halves import from_scaled_half
from imc_cluster.inference.features import view_features


class _Probe(nn.Module):
    """A linear encoder of flattened images that records the autocast state of each call."""

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, dim)
        self.autocast: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.autocast.append((torch.is_autocast_enabled("cpu"), torch.is_grad_enabled()))
        return self.linear(x.flatten(1))


def _network_input(batch: torch.Tensor) -> torch.Tensor:
    return batch.float() / 255


def _augment(batch: torch.Tensor, generator) -> list[torch.Tensor]:
    """Two groups of deterministic views, view-major: (mirror, upside down), then (inverted)."""
    x = _network_input(batch)
    return [torch.cat([x.flip(-1), x.flip(-2)]), 1 - x]


def _views_of(x: torch.Tensor) -> list[torch.Tensor]:
    return [x, x.flip(-1), x.flip(-2), 1 - x]


@pytest.fixture
def images() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8))


@pytest.fixture
def encoder() -> _Probe:
    torch.manual_seed(0)
    return _Probe(3 * 4 * 4, 6).eval()


def _out() -> np.ndarray:
    """The output array of 5 samples of 1 + 3 views of 6 features: scaled halves."""
    return np.zeros((5, 4, 7), dtype=np.float16)


def _decoded(out: np.ndarray) -> np.ndarray:
    return from_scaled_half(torch.from_numpy(out)).numpy()


def _extract(encoder, images, out, batch_size=2, dtype=None, on_batch=None):
    view_features(
        encoder,
        _augment,
        _network_input,
        images,
        out,
        batch_size=batch_size,
        generator=torch.Generator(),
        device=torch.device("cpu"),
        dtype=dtype,
        on_batch=on_batch,
    )


def test_each_row_holds_the_evaluation_view_then_the_training_views(encoder, images):
    out = _out()
    sizes = []
    _extract(encoder, images, out, on_batch=sizes.append)
    assert sizes == [2, 2, 1]
    features = _decoded(out)
    with torch.no_grad():
        for index, image in enumerate(images):
            views = _views_of(_network_input(image[None]))
            expected = torch.cat([encoder.linear(v.flatten(1)) for v in views]).numpy()
            scale = np.abs(expected).max(axis=1, keepdims=True)  # float16 precision at each vector's scale
            assert (np.abs(features[index] - expected) <= scale * 2.0**-11).all()
    assert len({tuple(row) for row in features.reshape(-1, 6).tolist()}) == 5 * 4  # every view its own


def test_batches_do_not_change_the_features(encoder, images):
    apart, together = _out(), _out()
    _extract(encoder, images, apart, batch_size=2)
    _extract(encoder, images, together, batch_size=5)
    np.testing.assert_allclose(_decoded(apart), _decoded(together), rtol=1e-3, atol=1e-6)


def test_features_of_any_magnitude_keep_their_precision(encoder, images):
    with torch.no_grad():
        encoder.linear.weight.mul_(1e-9)
        encoder.linear.bias.mul_(1e-9)
    out = _out()
    _extract(encoder, images, out)
    features = _decoded(out)
    assert 1e-10 < np.abs(features).max() < 1e-7  # plain float16 would hold zeros
    assert len({tuple(row) for row in features.reshape(-1, 6).tolist()}) == 5 * 4


def test_no_gradients_and_autocast_only_when_asked(encoder, images):
    out = _out()
    _extract(encoder, images, out)
    assert encoder.autocast and all(state == (False, False) for state in encoder.autocast)
    assert encoder.linear.weight.grad is None
    encoder.autocast.clear()
    _extract(encoder, images, out, dtype=torch.bfloat16)
    assert encoder.autocast and all(state == (True, False) for state in encoder.autocast)
    exact = _out()
    _extract(encoder, images, exact)
    assert not np.array_equal(out, exact)  # bf16 arithmetic rounds
    np.testing.assert_allclose(_decoded(out), _decoded(exact), atol=0.05)
