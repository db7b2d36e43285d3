"""The feature store of a frozen encoder: features found by image content, whatever the order and batching
of the images, computed only for images never seen, shared between processes through the folder, and
robust to a cleared, damaged or half-written folder."""

import threading

import numpy as np
import pytest
import torch

from imc_cluster.core.halves import from_scaled_half, to_scaled_half
from imc_cluster.inference.store import FeatureStore, feature_store, image_digests

DIM = 6


def _encoder(x: torch.Tensor) -> torch.Tensor:
    """A stand-in encoder: per-image sums of pixels, in several scales (not float16 values)."""
    total = x.double().flatten(1).sum(dim=1, keepdim=True)
    return (total / torch.arange(1, DIM + 1, dtype=torch.double) / 7.3).float()


class _Counting:
    """``_encoder`` that records the images it is run on."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return _encoder(x)

    @property
    def n_images(self) -> int:
        return sum(len(x) for x in self.seen)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (10, 3, 4, 5), dtype=np.uint8))


def _expected(x: torch.Tensor) -> np.ndarray:
    return from_scaled_half(to_scaled_half(_encoder(x))).numpy()


def test_digests_tell_images_apart_by_pixels_and_shape(images):
    digests = image_digests(images)
    assert digests.shape == (10,) and len(set(digests.tolist())) == 10
    np.testing.assert_array_equal(image_digests(images.clone()), digests)
    changed = images.clone()
    changed[3, 1, 2, 2] ^= 1
    assert (image_digests(changed) != digests).tolist() == [i == 3 for i in range(10)]
    same_bytes = images.reshape(10, 3, 5, 4)
    assert not (image_digests(same_bytes) == digests).any()


def test_unseen_images_are_computed_once_and_then_read(images, tmp_path):
    store, encoder = FeatureStore(tmp_path, DIM), _Counting()
    first = store.features(images[:6], encoder)
    assert encoder.n_images == 6
    np.testing.assert_array_equal(first.numpy(), _expected(images[:6]))
    assert first.dtype == torch.float32
    again = store.features(images.flip(0), encoder)  # reversed, four of them new
    assert encoder.n_images == 10
    torch.testing.assert_close(encoder.seen[1], images[6:].flip(0), rtol=0, atol=0)
    np.testing.assert_array_equal(again.numpy(), _expected(images.flip(0)))
    store.features(images[[2, 9, 2]], encoder)
    assert encoder.n_images == 10


def test_an_image_twice_in_one_call_is_kept_once(images, tmp_path):
    store, encoder = FeatureStore(tmp_path, DIM), _Counting()
    batch = images[[1, 4, 1, 1]]
    np.testing.assert_array_equal(store.features(batch, encoder).numpy(), _expected(batch))
    assert sum(np.load(file).size for file in tmp_path.glob("*.digests.npy")) == 2


def test_another_process_sees_the_shards_added_since(images, tmp_path):
    ours, theirs = FeatureStore(tmp_path, DIM), FeatureStore(tmp_path, DIM)
    ours.features(images[:5], _encoder)  # read the (empty) folder, then add five
    theirs.features(images[5:], _encoder)
    encoder = _Counting()
    np.testing.assert_array_equal(ours.features(images, encoder).numpy(), _expected(images))
    assert encoder.n_images == 0


def test_a_cleared_folder_is_computed_again(images, tmp_path):
    store = FeatureStore(tmp_path / "store", DIM)
    store.features(images, _encoder)
    for file in (tmp_path / "store").iterdir():
        file.unlink()
    encoder = _Counting()
    np.testing.assert_array_equal(store.features(images, encoder).numpy(), _expected(images))
    assert encoder.n_images == 10


@pytest.mark.parametrize("damage", ["truncated features", "no features", "digests of another kind"])
def test_a_damaged_shard_is_computed_again(images, tmp_path, damage):
    FeatureStore(tmp_path, DIM).features(images[:4], _encoder)
    (digests,) = tmp_path.glob("*.digests.npy")
    features = tmp_path / digests.name.replace(".digests.", ".features.")
    if damage == "truncated features":
        features.write_bytes(features.read_bytes()[:100])
    elif damage == "no features":
        features.unlink()
    else:
        np.save(digests, np.arange(4))
    encoder = _Counting()
    np.testing.assert_array_equal(
        FeatureStore(tmp_path, DIM).features(images, encoder).numpy(), _expected(images)
    )
    assert encoder.n_images == 10


def test_half_written_files_are_not_shards(images, tmp_path):
    FeatureStore(tmp_path, DIM).features(images[:4], _encoder)
    (digests,) = tmp_path.glob("*.digests.npy")
    digests.rename(tmp_path / f".{digests.name}.partial")  # killed before its digests were in place
    encoder = _Counting()
    FeatureStore(tmp_path, DIM).features(images[:4], encoder)
    assert encoder.n_images == 4


def test_threads_share_one_store(images, tmp_path):
    store = feature_store(tmp_path, DIM)
    assert feature_store(tmp_path / ".", DIM) is store
    results: dict[int, np.ndarray] = {}

    def work(index: int) -> None:
        order = np.random.default_rng(index).permutation(10)
        results[index] = (order, store.features(images[order], _encoder).numpy())

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for order, features in results.values():
        np.testing.assert_array_equal(features, _expected(images[order]))
