"""The training views of a frozen encoder: the view groups of cached features, exactly the cached values,
view-major, without the evaluation view."""

import pytest
import torch

from imc_cluster.augmentation.cached import EVALUATION_VIEW, CachedViews
from imc_cluster.core.halves import to_scaled_half


def _values(n_samples: int, n_views: int, dim: int) -> torch.Tensor:
    """Features whose value tells sample, view and dimension: 100 * sample + 10 * view + dim + 1."""
    sample = torch.arange(n_samples).view(-1, 1, 1) * 100
    view = torch.arange(n_views).view(1, -1, 1) * 10
    return (sample + view + torch.arange(1, dim + 1).view(1, 1, -1)).float()


def _cached(n_samples: int, n_views: int, dim: int) -> torch.Tensor:
    """:func:`_values` as the cache keeps them (scaled halves, exact for these integers)."""
    return to_scaled_half(_values(n_samples, n_views, dim))


def test_groups_are_the_cached_views_view_major():
    features = _values(n_samples=4, n_views=1 + 2 + 3, dim=5)
    large, small = CachedViews(2, 3)(to_scaled_half(features))
    assert large.shape == (2 * 4, 5) and small.shape == (3 * 4, 5)
    assert large.dtype == small.dtype == torch.float32
    for view in range(2):  # rows [k * B:(k + 1) * B] are view k of every sample
        assert torch.equal(large[view * 4 : (view + 1) * 4], features[:, 1 + view])
    for view in range(3):
        assert torch.equal(small[view * 4 : (view + 1) * 4], features[:, 3 + view])


def test_the_evaluation_view_is_no_training_view():
    assert EVALUATION_VIEW == 0
    features = _values(3, 1 + 1 + 1, 2)
    groups = CachedViews(1, 1)(to_scaled_half(features))
    evaluation = features[:, EVALUATION_VIEW]
    for group in groups:
        for row in group:
            assert not any(torch.equal(row, kept) for kept in evaluation)


def test_no_small_views_gives_one_group():
    features = _values(2, 1 + 3, 4)
    groups = CachedViews(3, 0)(to_scaled_half(features))
    assert len(groups) == 1
    assert torch.equal(groups[0], features[:, 1:].transpose(0, 1).flatten(0, 1))


def test_the_generator_draws_nothing():
    features = _cached(2, 1 + 2 + 2, 3)
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    with_generator = CachedViews(2, 2)(features, generator)
    assert torch.equal(generator.get_state(), state)
    for got, expected in zip(with_generator, CachedViews(2, 2)(features)):
        assert torch.equal(got, expected)


@pytest.mark.parametrize("n_large, n_small", [(2, 1), (1, 2), (3, 3)])
def test_a_cache_of_other_views_is_refused(n_large, n_small):
    features = _cached(2, 1 + 2 + 2, 3)  # 4 training views per sample
    with pytest.raises(ValueError, match=f"hold 4 views per sample, not {n_large} \\+ {n_small}"):
        CachedViews(n_large, n_small)(features)
