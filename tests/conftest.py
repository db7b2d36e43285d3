"""Shared fixtures: tiny configurations that train in well under a second, the published constants of the
method, and a tiny model trained on a folder of photos.

Test modules are imported with ``--import-mode=importlib`` (same-named modules live in different folders),
so nothing here is imported by name: every shared value is a fixture.
"""

import contextlib
import copy
import dataclasses
import io
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from imc_cluster import IMCSwAVClustering
from imc_cluster.checkpoints.files import load_checkpoint, save_checkpoint
from imc_cluster.cli.main import main
from imc_cluster.core.cache import CACHE_ENV
from imc_cluster.estimator import params as parameters
from imc_cluster.training.trainer import TrainingConfig

#: a network small enough for CI: 4-channel ResNet-18, 10 prototypes, 16-unit head
#: (tests/recorded/before_restructuring.json records fits of these parameters: changing them fails
#: tests/estimator/test_recorded_fits.py)
TINY = dict(
    backbone_width=4,
    n_prototypes=10,
    projection_dim=8,
    head_hidden_dim=16,
    batch_size=16,
    max_epochs=2,
    warmup_updates=2,
    bn_recalibration_batches=2,
    random_state=0,
)

#: the constants of the published method (docs/method.md), transcribed here once and independently of the
#: package, by the names of the estimator's parameters: tests compare the package with them and never read
#: them from the code under test
PUBLISHED = dict(
    # the objectives
    temperature=0.1,
    sinkhorn_epsilon=0.05,
    sinkhorn_iterations=3,
    marginal_weight=4.0,
    logit_penalty=0.01,
    logit_threshold=5.0,
    # the views: 2 large and 4 small crops, flipped, colour-jittered and turned grey at random
    n_large_crops=2,
    n_small_crops=4,
    flip_prob=0.5,
    color_jitter=(0.4, 0.4, 0.4, 0.1),
    color_jitter_prob=0.8,
    grayscale_prob=0.25,
    # the optimisation: Adam, a linear warm-up, then steps at epoch milestones
    batch_size=256,
    learning_rate=5e-4,
    betas=(0.8, 0.999),
    weight_decay=1e-5,
    warmup_updates=500,
    lr_milestones=(150, 300, 400),
    lr_gamma=0.4,
    # the network around the encoder
    n_prototypes=1000,
    projection_dim=128,
    head_hidden_dim=1024,
)

#: a one-epoch command-line run of a tiny network on a folder of photos
PHOTOS_RUN = shlex.split(
    "--epochs 1 --batch_size 8 --prototypes 10 --backbone_width 4 --warmup 1 --project_dim 8 --dev cpu "
    "--quiet"
)
#: the clusters of the model trained on the photos
PHOTOS_CLUSTERS = 3


@pytest.fixture(autouse=True)
def _configuration_warnings_anew():
    """Every test sees the configuration warnings its fits give: the process gives each kind once."""
    parameters._WARNED.clear()


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory):
    """The suite's caches (decoded folders, frozen encoders' features) in a folder of its own, never in the
    user's cache folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_params() -> dict:
    """The parameters of a tiny estimator (:data:`TINY`); copy before changing them."""
    return dict(TINY)


@pytest.fixture
def tiny():
    """Factory of tiny estimators; keyword arguments override the tiny defaults."""
    return lambda **params: IMCSwAVClustering(**{**TINY, "n_clusters": 3, **params})


def _brightness_classes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8)
    images = rng.integers(0, 80, size=(24, 12, 12, 3)) + 80 * labels[:, None, None, None]
    return images.astype(np.uint8), labels


@pytest.fixture
def rgb_images():
    """24 random 12x12 RGB uint8 images (N, H, W, C) with three 'classes' of brightness, and their labels."""
    return _brightness_classes()


@pytest.fixture(scope="module")
def pixels():
    """The images and labels of :func:`rgb_images`, shared by the tests of a module: do not change them."""
    return _brightness_classes()


@pytest.fixture(scope="module")
def fitted_on_uint8(pixels, tiny_params):
    """A tiny estimator fitted on the uint8 :func:`pixels`, shared by the tests of a module: copy it before
    changing it."""
    return IMCSwAVClustering(**{**tiny_params, "n_clusters": 3}).fit(pixels[0])


def _small_images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size=(24, 8, 8, 3)).astype(np.uint8)


@pytest.fixture
def small_images():
    """24 random 8x8 RGB uint8 images (N, H, W, C)."""
    return _small_images()


@pytest.fixture(scope="session")
def spawn(pytestconfig):
    """``spawn(fn, args, nprocs)``: :func:`torch.multiprocessing.start_processes` with the "spawn" start
    method. Each process imports the test module of ``fn`` by the name that ``--import-mode=importlib`` gave
    it (``tests.<folder>.<module>``), so the repository root is on their ``sys.path``."""

    def start(fn, args: tuple, nprocs: int) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.syspath_prepend(str(pytestconfig.rootpath))
            mp.start_processes(fn, args=args, nprocs=nprocs, start_method="spawn")

    return start


# ------------------------------------------------------------------ a saved checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_params):
    """A checkpoint of a tiny estimator fitted on :func:`small_images`, and those images."""
    images = _small_images()
    path = tmp_path_factory.mktemp("cpt") / "m.cpt"
    IMCSwAVClustering(**{**tiny_params, "n_clusters": 3}).fit(images).save(path)
    return path, images


@pytest.fixture
def tampered(saved, tmp_path):
    """``tampered(change)``: the :func:`saved` checkpoint with ``change(content)`` applied, written again
    under a valid digest: an intact file whose content is wrong."""

    def write(change) -> Path:
        content = copy.deepcopy(load_checkpoint(saved[0]))
        change(content)
        save_checkpoint(content, tmp_path / "t.cpt", "test")
        return tmp_path / "t.cpt"

    return write


# ------------------------------------------------------------------ the published method


@pytest.fixture(scope="session")
def published() -> dict:
    """The published constants (:data:`PUBLISHED`), by the names of the estimator's parameters."""
    return dict(PUBLISHED)


@pytest.fixture(scope="session")
def training_settings(published) -> dict:
    """The published optimisation and objective settings, as keyword arguments of :class:`TrainingConfig`
    (whose fields are named as the estimator's parameters)."""
    return {field.name: published[field.name] for field in dataclasses.fields(TrainingConfig)}


@pytest.fixture
def training_config(training_settings):
    """Factory of :class:`TrainingConfig`: the published settings, with keyword arguments overriding them."""
    return lambda **overrides: TrainingConfig(**{**training_settings, **overrides})


@pytest.fixture
def published_views(published) -> dict:
    """The published flip, colour jitter and greyscale settings, as keyword arguments of
    :class:`~imc_cluster.augmentation.multicrop.MultiCropAugmenter` (named as the estimator's parameters)."""
    names = ("flip_prob", "color_jitter", "color_jitter_prob", "grayscale_prob")
    return {name: published[name] for name in names}


# ------------------------------------------------------------------ the command line


def _run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(arg) for arg in argv])
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(argv)``: ``imc-cluster argv`` in this process, each argument made a string: its exit
    status, stdout and stderr."""
    return _run_cli


def _folder_train_argv(path, output_dir, *flags) -> list:
    return ["train", "--dataset", "folder", "--path", path, *PHOTOS_RUN, *flags, "--output_dir", output_dir]


@pytest.fixture(scope="session")
def folder_train_argv():
    """``folder_train_argv(path, output_dir, *flags)``: the argv of a one-epoch ``imc-cluster train`` of a
    tiny network (:data:`PHOTOS_RUN`, which ``flags`` follow and may override) on the image folder
    ``path``."""
    return _folder_train_argv


# ------------------------------------------------------------------ a folder of photos and a model of them


def _save_photo(file: Path, array: np.ndarray) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(file, **({"quality": 95} if file.suffix == ".jpg" else {}))


@pytest.fixture(scope="session")
def save_photo():
    """``save_photo(file, array)``: an (H, W) or (H, W, 3) uint8 array written as an image file, its folders
    made, its format from the suffix (JPEG at quality 95)."""
    return _save_photo


@pytest.fixture(scope="session")
def photos_run() -> list[str]:
    """The flags of a one-epoch run of a tiny network on a folder of photos (:data:`PHOTOS_RUN`)."""
    return list(PHOTOS_RUN)


@pytest.fixture(scope="session")
def photos_clusters() -> int:
    """The number of clusters of :func:`photos_model` (:data:`PHOTOS_CLUSTERS`)."""
    return PHOTOS_CLUSTERS


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A flat folder of 13 readable images of mixed sizes around 16x16, PNG and JPEG, dark and bright, one
    of them grey."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for index in range(12):
        low = 0 if index % 2 else 170
        shape = (14 + index % 4 * 2, 16 + index % 3 * 4, 3)
        _save_photo(
            folder / f"photo{index:02d}.{'png' if index % 3 else 'jpg'}",
            rng.integers(low, low + 86, shape, dtype=np.uint8),
        )
    _save_photo(folder / "grey.png", rng.integers(0, 256, (20, 20), dtype=np.uint8))
    return folder


@pytest.fixture(scope="module")
def photos_model(photos, tmp_path_factory) -> tuple[Path, str]:
    """The checkpoint of a tiny model of :data:`PHOTOS_CLUSTERS` clusters trained on the unlabelled photos
    by ``imc-cluster train``, and what ``train`` printed."""
    out = tmp_path_factory.mktemp("run")
    argv = _folder_train_argv(photos, out, "--image_size", "16", "--n_clusters", PHOTOS_CLUSTERS)
    status, printed, err = _run_cli(argv)
    assert status == 0, err
    return out / "model.cpt", printed


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network and empty library caches: published weights cannot be fetched (torch.hub fails, Hugging
    Face is offline)."""
    import huggingface_hub.constants as hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))

    def no_network(*args, **kwargs):
        raise OSError("no network in the tests")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path


#: a tiny frozen fit: timm's smallest test network, 2 + 1 views of 12 photos
FROZEN_TINY = dict(
    backbone="timm:test_vit",
    n_clusters=3,
    n_prototypes=20,
    projection_dim=8,
    head_hidden_dim=32,
    batch_size=6,
    max_epochs=2,
    warmup_updates=1,
    bn_recalibration_batches=1,
    n_large_crops=2,
    n_small_crops=1,
    random_state=0,
)


@pytest.fixture(scope="session")
def frozen_photos(tmp_path_factory) -> tuple[Path, np.ndarray, str]:
    """A folder of 12 PNG photos of 40x50, the images as ``load_image_folder`` reads them for the network
    (sorted names, at its resize side, as ``predict_folder`` reads them), and a weights file of a random
    timm ``test_vit``."""
    import safetensors.torch
    import timm

    from imc_cluster.data.folders import load_image_folder
    from imc_cluster.model.pretrained import network_preprocessing

    folder = tmp_path_factory.mktemp("frozen_photos")
    rng = np.random.default_rng(0)
    for index in range(12):
        _save_photo(folder / "photos" / f"{index:02d}.png", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        safetensors.torch.save_file(
            timm.create_model("test_vit").state_dict(), folder / "test_vit.safetensors"
        )
    photos = folder / "photos"
    side = network_preprocessing(FROZEN_TINY["backbone"]).resize
    return photos, load_image_folder(photos, side).images, str(folder / "test_vit.safetensors")


@pytest.fixture
def frozen_fit(frozen_photos, tmp_path):
    """``frozen_fit(**params)``: a frozen fit (:data:`FROZEN_TINY`) on :func:`frozen_photos`, with a cache
    folder of its own."""

    def fit(**params) -> IMCSwAVClustering:
        settings = {
            **FROZEN_TINY,
            "weights": frozen_photos[2],
            "cache_dir": str(tmp_path / "cache"),
            **params,
        }
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "n_prototypes=20 exceeds")
            return IMCSwAVClustering(**settings).fit(frozen_photos[1])

    return fit
