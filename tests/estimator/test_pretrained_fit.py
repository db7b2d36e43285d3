"""Fits of pretrained encoders (torchvision, timm, open_clip) through the estimator: features as each
library computes them, training views at the network's input, frozen encoders that never change, the
feature cache and what makes a new one, checkpoints that load without weights files or downloads, warm
starts, images of any size, and the errors of the new parameters.

Nothing is downloaded: the weights files are random networks written here in each library's format. The
networks are each library's smallest: torchvision's MobileNet-V3-small, timm's test networks, open_clip's
ViT-S-32-alt (the smallest it lists), and for an open_clip network that trains, a tiny ViT registered here
as an open_clip model configuration (training ViT-S-32 would take most of the time of these tests).
"""

import copy
import hashlib
import shutil
import sys

import numpy as np
import open_clip
import pytest
import safetensors.torch
import timm
import torch
import torchvision
from open_clip import factory as open_clip_factory
from PIL import Image
from torch import nn

from imc_cluster import IMCSwAVClustering
from imc_cluster.checkpoints.files import CheckpointError, load_checkpoint, save_checkpoint
from imc_cluster.core.cache import CACHE_ENV
from imc_cluster.core.halves import from_scaled_half
from imc_cluster.data.encoder import InputEncoder
from imc_cluster.data.folders import load_image_folder
from imc_cluster.estimator import components, fitting
from imc_cluster.estimator import frozen as frozen_features
from imc_cluster.estimator.params import checked_params, frozen_encoder
from imc_cluster.model.build import load_pretrained
from imc_cluster.model.pretrained import network_preprocessing

pytestmark = pytest.mark.filterwarnings("ignore:n_prototypes=20 exceeds")

#: an open_clip configuration small enough to train in a test: 32x32 inputs, one transformer block
TINY_CLIP = "imc-tests-tiny-ViT"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}

#: the networks: backbone and weights file of each library's frozen fit
FROZEN = {
    "torchvision": ("torchvision:mobilenet_v3_small", "mobilenet.pth"),
    "timm": ("timm:test_vit", "test_vit.safetensors"),
    "open_clip": ("open_clip:ViT-S-32-alt", "vit_s_32_alt.pt"),
}
#: the unfrozen fits: backbone, and weights file or None (random)
UNFROZEN = {
    "torchvision": ("torchvision:mobilenet_v3_small", "mobilenet.pth"),
    "timm": ("timm:test_vit", "test_vit.safetensors"),
    "open_clip": (f"open_clip:{TINY_CLIP}", None),
}
#: an encoder that trains costs: one epoch of two views, and a CNN's at a smaller side than its input
UNFROZEN_RUN = dict(freeze_encoder=False, max_epochs=1, n_small_crops=0)
UNFROZEN_CROPS = {"torchvision": dict(large_crop_size=64, small_crop_size=32)}
#: open_clip's ViT-S-32 is slow on a CPU: its frozen fit sees 2 of the images
FIT_SAMPLES = {"open_clip": 2}
#: a tiny fit: 4 images of 40x50, two large views and one small one
SMALL = dict(
    n_clusters=2,
    n_prototypes=20,
    projection_dim=8,
    head_hidden_dim=32,
    batch_size=4,
    max_epochs=2,
    warmup_updates=1,
    bn_recalibration_batches=1,
    n_large_crops=2,
    n_small_crops=1,
    precision="float32",
    random_state=0,
)


def _images(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module", autouse=True)
def _tiny_clip():
    """The tiny open_clip configuration, registered for the tests of this module only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(open_clip_factory, "_MODEL_CONFIGS", {**open_clip.factory._MODEL_CONFIGS})
        open_clip_factory._MODEL_CONFIGS[TINY_CLIP] = TINY_CLIP_CONFIG
        yield


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    """Nothing goes into the user's cache folder."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "user_cache"))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """The 4 training images, RGB 40x50."""
    return _images((4, 40, 50, 3), 0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict:
    """Weights files of random networks, by file name."""
    folder = tmp_path_factory.mktemp("weights")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        torch.save(torchvision.models.get_model("mobilenet_v3_small").state_dict(), folder / "mobilenet.pth")
        safetensors.torch.save_file(
            timm.create_model("test_vit").state_dict(), folder / "test_vit.safetensors"
        )
        torch.save(open_clip.create_model("ViT-S-32-alt").state_dict(), folder / "vit_s_32_alt.pt")
    return {file.name: file for file in folder.iterdir()}


class _Modes:
    """The training mode of the encoder's BatchNorm layers: at every forward pass of a fit (hooks on the
    network the fit loads) and after every epoch (a callback)."""

    def __init__(self) -> None:
        self.forward: list[bool] = []
        self.epochs: list[list[bool]] = []

    def watch(self, pretrained):
        for module in pretrained.network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.register_forward_pre_hook(lambda layer, args: self.forward.append(layer.training))
        return pretrained

    def __call__(self, est, record) -> None:
        layers = [m for m in est.model_.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
        self.epochs.append([layer.training for layer in layers])


def _fit(X, backbone, weights=None, modes=None, **params):
    """A tiny fit; ``modes`` (a :class:`_Modes`) records the encoder's BatchNorm modes."""
    if weights not in (None, "pretrained"):
        weights = str(weights)  # a path object cannot be saved in a checkpoint (see the test below)
    params = {key: str(value) if key == "cache_dir" else value for key, value in params.items()}
    est = IMCSwAVClustering(backbone=backbone, weights=weights, **{**SMALL, **params})
    if modes is None:
        return est.fit(X)
    load = fitting.load_pretrained
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fitting, "load_pretrained", lambda *args: modes.watch(load(*args)))
        return est.fit(X, callbacks=[modes])


@pytest.fixture(scope="module")
def fitted(images, weights, tmp_path_factory):
    """``fitted(library, kind)``: the fitted estimator of FROZEN or UNFROZEN (kind "frozen" or "unfrozen"),
    fitted once per module, with the BatchNorm modes of its fit in ``est.modes``."""
    cache = tmp_path_factory.mktemp("fits_cache")
    made = {}

    def get(library: str, kind: str = "frozen") -> IMCSwAVClustering:
        if (library, kind) not in made:
            backbone, file = (FROZEN if kind == "frozen" else UNFROZEN)[library]
            modes = _Modes()
            params = dict(freeze_encoder="auto")
            if kind == "unfrozen":
                params = {**UNFROZEN_RUN, **UNFROZEN_CROPS.get(library, {})}
            path = None if file is None else weights[file]
            X = images[: FIT_SAMPLES.get(library, len(images))]
            est = _fit(X, backbone, path, modes, cache_dir=cache, **params)
            est.modes = modes
            made[library, kind] = est
        return made[library, kind]

    return get


def _state(module: nn.Module) -> dict:
    return {name: tensor.clone() for name, tensor in module.state_dict().items()}


def _same_state(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _saved_encoder(library: str, file) -> dict:
    """The encoder's part of a weights file, by the names of the encoder's network: without torchvision's
    classifier and timm's head, open_clip's image tower."""
    if library == "timm":
        return {k: v for k, v in safetensors.torch.load_file(file).items() if not k.startswith("head.")}
    state = torch.load(file, weights_only=True)
    if library == "torchvision":
        return {k: v for k, v in state.items() if not k.startswith("classifier.")}
    return {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}


def _identity(file) -> str:
    return f"file {file.name} sha256:{hashlib.sha256(file.read_bytes()).hexdigest()}"


# ------------------------------------------------------------------ features as the library computes them


def _library_network(library: str, file):
    """The library's own network (with the weights of ``file``) and evaluation transform."""
    if library == "torchvision":
        network = torchvision.models.get_model("mobilenet_v3_small")
        network.load_state_dict(torch.load(file, weights_only=True))
        network.classifier = nn.Identity()
        transform = torchvision.models.get_model_weights("mobilenet_v3_small").DEFAULT.transforms()
        return network.eval(), transform
    if library == "timm":
        network = timm.create_model("test_vit", num_classes=0)
        state = safetensors.torch.load_file(file)
        network.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
        config = timm.data.resolve_model_data_config(network)
        return network.eval(), timm.data.create_transform(**config, is_training=False)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-S-32-alt", pretrained=str(file))
    return model.eval().encode_image, preprocess


@pytest.mark.parametrize("library", list(FROZEN))
def test_transform_is_the_library_network_on_its_own_pipeline(fitted, weights, library):
    est = fitted(library)
    network, transform = _library_network(library, weights[FROZEN[library][1]])
    # one size per call: the training size, portrait, grey, larger than the input
    for seed, shape in enumerate([(2, 40, 50, 3), (1, 70, 33, 3), (1, 120, 90), (1, 300, 200, 3)]):
        X = _images(shape, 10 + seed)
        ours = est.transform(X)
        with torch.no_grad():
            pictures = [transform(Image.fromarray(x).convert("RGB")) for x in X]
            theirs = network(torch.stack(pictures)).numpy()
        assert ours.shape == theirs.shape == (shape[0], est.model_.encoder.out_features)
        # measured: at most 5.2e-4 of the largest feature (the resizes differ by up to 2 uint8 levels)
        assert np.abs(ours - theirs).max() <= 2e-3 * np.abs(theirs).max(), shape
        if len(X) > 1:  # the features tell the images apart: the bound above is no constant's
            assert np.abs(theirs[0] - theirs[1]).max() > 0.05 * np.abs(theirs).max()


# ------------------------------------------------------------------ the training views


@pytest.mark.parametrize(
    "library, large, small",
    [("torchvision", 224, round(224 * 96 / 224)), ("timm", 160, 160), ("open_clip", 224, 224)],
)
def test_training_views_are_crops_at_the_network_input(fitted, images, library, large, small):
    est = fitted(library)
    params = checked_params(est)
    augment = components.augmenter(params, est.inputs_)
    assert [group.size for group in augment.groups] == [(large, large), (small, small)]
    assert [group.scale for group in augment.groups] == [(0.2, 1.0), (0.08, 0.4)]
    assert [group.n_crops for group in augment.groups] == [2, 1]
    squares = est.inputs_.encode(images, est).values
    side = est.inputs_.preprocessing.resize
    assert squares.shape == (4, 3, side, side)
    views = augment(squares, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(8, 3, large, large), (4, 3, small, small)]
    # whole squares, neither flipped nor coloured: normalised by the network's own statistics
    plain = {"flip_prob": 0.0, "color_jitter_prob": 0.0, "grayscale_prob": 0.0, "large_crop_scale": (1, 1)}
    whole = components.augmenter({**params, **plain}, est.inputs_)(squares, torch.Generator())[0]
    p = est.inputs_.preprocessing
    pixels = whole * torch.tensor(p.std).view(1, 3, 1, 1) + torch.tensor(p.mean).view(1, 3, 1, 1)
    expected = squares.float().mean(dim=(2, 3)) / 255
    assert torch.allclose(pixels.mean(dim=(2, 3)), expected.repeat(2, 1), atol=0.01)


def test_a_cnn_of_timm_takes_small_crops_in_swav_proportion(fitted, images):
    inputs = InputEncoder(None, "timm:test_resnet", None, network_preprocessing("timm:test_resnet"))
    inputs.fit_statistics(inputs.fit_encode(images, None).values)
    augment = components.augmenter(checked_params(fitted("timm")), inputs)
    assert [group.size for group in augment.groups] == [(160, 160), (69, 69)]  # round(160 * 96 / 224)


@pytest.mark.parametrize(
    "crops", [dict(large_crop_size=128), dict(small_crop_size=96), dict(large_crop_size=(160, 128))]
)
def test_a_fixed_size_network_takes_no_other_crop_size(images, weights, tmp_path, crops):
    with pytest.raises(
        ValueError, match=r"takes 160x160 inputs only.*leave large_crop_size and small_crop_size"
    ):
        _fit(images, "timm:test_vit", weights["test_vit.safetensors"], cache_dir=tmp_path, **crops)


def test_a_cnn_takes_the_crop_sizes_given(fitted):
    est = fitted("torchvision")
    params = checked_params(est)
    sizes = components.crop_sizes(
        {**params, "large_crop_size": 200, "small_crop_size": (80, 64)}, est.inputs_
    )
    assert sizes == ((200, 200), (80, 64))
    with pytest.raises(ValueError, match=r"large_crop_size=\(300, 300\) is larger than the 256x256 images"):
        components.crop_sizes({**params, "large_crop_size": 300}, est.inputs_)


# ------------------------------------------------------------------ frozen and unfrozen encoders


@pytest.mark.parametrize("library", list(FROZEN))
def test_a_frozen_fit_changes_no_encoder_weight(fitted, weights, images, library):
    est = fitted(library)
    file = FROZEN[library][1]
    saved = _saved_encoder(library, weights[file])
    assert _same_state(est.model_.encoder.network.state_dict(), saved)  # BatchNorm buffers too
    assert est.architecture_["pretrained"] == {"frozen": True, "weights": _identity(weights[file])}
    assert not any(parameter.requires_grad for parameter in est.model_.encoder.parameters())
    n_samples = FIT_SAMPLES.get(library, len(images))
    assert est.n_iter_ == SMALL["max_epochs"] and est.labels_.shape == (n_samples,)
    # the labels of the cached (float16) features are those of the images
    np.testing.assert_array_equal(est.labels_, est.predict(images[:n_samples]))


def test_a_frozen_encoder_never_trains_its_batchnorm(fitted):
    modes = fitted("torchvision").modes
    assert len(modes.forward) > 0 and not any(modes.forward)  # every pass of the fit in evaluation mode
    assert len(modes.epochs) == SMALL["max_epochs"]
    assert all(epoch and not any(epoch) for epoch in modes.epochs)


def test_an_unfrozen_encoder_trains_its_batchnorm(fitted):
    modes = fitted("torchvision", "unfrozen").modes
    assert any(modes.forward)  # the hooks see training passes: the test above could fail


@pytest.mark.parametrize("library", list(UNFROZEN))
def test_an_unfrozen_fit_trains_the_encoder(fitted, weights, library):
    est = fitted(library, "unfrozen")
    backbone, file = UNFROZEN[library]
    if file is None:
        start = load_pretrained(backbone, None, est.training_state_["seed"]).network.state_dict()
    else:
        start = _saved_encoder(library, weights[file])
    trained = est.model_.encoder.network.state_dict()
    assert trained.keys() == start.keys()
    changed = [name for name in start if not torch.equal(trained[name], start[name])]
    assert len(changed) > len(start) // 2
    identity = None if file is None else _identity(weights[file])
    assert est.architecture_["pretrained"] == {"frozen": False, "weights": identity}
    assert all(parameter.requires_grad for parameter in est.model_.encoder.parameters())


def test_freeze_encoder_auto_freezes_given_weights():
    def frozen(**params):
        return frozen_encoder(
            {"backbone": "timm:test_vit", "weights": None, "freeze_encoder": "auto", **params}
        )

    assert frozen(weights="pretrained") and frozen(weights="w.pth")
    assert not frozen() and not frozen(backbone="resnet18")
    assert frozen(freeze_encoder=True) and not frozen(weights="pretrained", freeze_encoder=False)


def test_the_same_seed_gives_the_same_random_network(images, tmp_path):
    first, second = (
        _fit(images, "timm:test_vit", freeze_encoder=True, cache_dir=tmp_path / str(i), max_epochs=1)
        for i in range(2)
    )
    assert _same_state(first.model_.state_dict(), second.model_.state_dict())
    assert first.architecture_["pretrained"] == {"frozen": True, "weights": None}
    np.testing.assert_array_equal(first.predict_proba(images), second.predict_proba(images))


# ------------------------------------------------------------------ the feature cache


@pytest.fixture(scope="module")
def base_cache(images, weights, tmp_path_factory):
    """A frozen timm fit into a cache folder of its own: the folder, the fit and its features file."""
    folder = tmp_path_factory.mktemp("base_cache")
    est = _fit(images, "timm:test_vit", weights["test_vit.safetensors"], cache_dir=folder)
    (file,) = (folder / "features").glob("*.npy")
    return folder, est, file


@pytest.fixture
def cache_copy(base_cache, tmp_path):
    """A copy of :func:`base_cache`'s folder, for a test to fit into."""
    return shutil.copytree(base_cache[0], tmp_path / "cache")


class _Counted:
    """``view_features`` that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.original = frozen_features.view_features

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.original(*args, **kwargs)


@pytest.fixture
def extractions(monkeypatch) -> _Counted:
    counted = _Counted()
    monkeypatch.setattr(frozen_features, "view_features", counted)
    return counted


def _features_files(folder):
    return sorted((folder / "features").glob("*.npy"))


def test_the_cache_holds_every_views_features_in_float16(base_cache, images):
    folder, est, file = base_cache
    assert _features_files(folder) == [file]
    features = np.load(file)
    assert features.dtype == np.float16
    assert features.shape == (4, 1 + SMALL["n_large_crops"] + SMALL["n_small_crops"], 64 + 1)  # + the scale
    features = from_scaled_half(torch.from_numpy(features)).numpy()
    evaluation = est.transform(images)  # the first view is the un-augmented centre crop: the same values
    np.testing.assert_array_equal(features[:, 0], evaluation)
    assert not np.allclose(features[:, 1], features[:, 0], atol=1e-2)  # the others are augmented
    assert not list((folder / "features").glob("*partial*"))


def test_another_fit_on_the_same_images_reuses_the_cache(cache_copy, images, weights, monkeypatch):
    def no_extraction(*args, **kwargs):
        raise AssertionError("the features were computed again")

    monkeypatch.setattr(frozen_features, "view_features", no_extraction)
    (file,) = _features_files(cache_copy)
    written = file.stat().st_mtime_ns
    est = _fit(images, "timm:test_vit", weights["test_vit.safetensors"], cache_dir=cache_copy, n_clusters=3)
    assert est.labels_.shape == (4,) and set(est.labels_) <= {0, 1, 2}
    assert est.predict_proba(images).shape == (4, 3)
    assert _features_files(cache_copy) == [file] and file.stat().st_mtime_ns == written


def _other_weights(folder, weights):
    """A weights file of the same name and network as the fits', of other content."""
    folder.mkdir()
    state = timm.create_model("test_vit").state_dict()
    safetensors.torch.save_file({k: v + 0.01 for k, v in state.items()}, folder / "test_vit.safetensors")
    assert (folder / "test_vit.safetensors").read_bytes() != weights["test_vit.safetensors"].read_bytes()
    return folder / "test_vit.safetensors"


def _one_pixel(images):
    changed = images.copy()
    changed[0, 20, 25, 0] = 255 - changed[0, 20, 25, 0]
    return changed


@pytest.mark.parametrize(
    "change",
    [
        "pixel",
        "weights",
        dict(random_state=1),
        dict(n_small_crops=2),
        dict(small_crop_scale=(0.1, 0.3)),
        dict(large_crop_scale=(0.3, 1.0)),
        dict(color_jitter_prob=0.5),
        dict(precision="bfloat16"),
    ],
)
def test_what_changes_the_features_makes_another_cache_file(
    cache_copy, images, weights, extractions, tmp_path, change
):
    X, file, params = images, weights["test_vit.safetensors"], {}
    if change == "pixel":
        X = _one_pixel(images)
    elif change == "weights":
        file = _other_weights(tmp_path / "other", weights)
    else:
        params = change
    (old,) = _features_files(cache_copy)
    _fit(X, "timm:test_vit", file, cache_dir=cache_copy, **params)
    assert extractions.calls == 1
    files = _features_files(cache_copy)
    assert len(files) == 2 and old in files
    (new,) = set(files) - {old}
    views = 1 + SMALL["n_large_crops"] + params.get("n_small_crops", SMALL["n_small_crops"])
    assert np.load(new, mmap_mode="r").shape == (4, views, 64 + 1)


def test_a_partial_file_of_a_killed_run_is_not_used(cache_copy, base_cache, images, weights, extractions):
    (file,) = _features_files(cache_copy)
    complete = np.load(file)
    file.unlink()
    stale = np.lib.format.open_memmap(
        file.with_name(f"{file.stem}.4242-deadbeef.partial.npy"),
        mode="w+",
        dtype=np.float16,
        shape=complete.shape,
    )
    stale[:2] = complete[:2]  # the killed run wrote its first batch
    del stale
    est = _fit(images, "timm:test_vit", weights["test_vit.safetensors"], cache_dir=cache_copy)
    assert extractions.calls == 1
    np.testing.assert_array_equal(np.load(file), complete)
    np.testing.assert_array_equal(est.labels_, base_cache[1].labels_)


def test_an_interrupted_extraction_leaves_no_features_file(images, weights, tmp_path, monkeypatch):
    def interrupted(encoder, augment, network_input, values, out, **kwargs):
        out[:1] = 1.0
        raise KeyboardInterrupt

    monkeypatch.setattr(frozen_features, "view_features", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _fit(images, "timm:test_vit", weights["test_vit.safetensors"], cache_dir=tmp_path)
    assert list((tmp_path / "features").iterdir()) == []


def test_the_data_folder_is_not_written(images, weights, tmp_path, save_photo):
    data = tmp_path / "data"
    for index, image in enumerate(images):
        save_photo(data / f"{index}.png", image)

    def listing():
        return sorted((p.relative_to(data), p.stat().st_size, p.stat().st_mtime_ns) for p in data.rglob("*"))

    before = listing()
    cache = tmp_path / "cache"
    X = load_image_folder(data, cache_dir=cache).images
    np.testing.assert_array_equal(X, images)
    _fit(X, "timm:test_vit", weights["test_vit.safetensors"], cache_dir=cache)
    assert listing() == before
    assert len(_features_files(cache)) == 1


# ------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("kind", ["frozen", "unfrozen"])
@pytest.mark.parametrize("library", list(FROZEN))
def test_a_checkpoint_loads_without_download(fitted, weights, images, offline, library, kind):
    est = fitted(library, kind)
    path = offline / "model.cpt"
    est.save(path)
    content = load_checkpoint(path)
    file = (FROZEN if kind == "frozen" else UNFROZEN)[library][1]
    identity = None if file is None else _identity(weights[file])
    assert content["architecture"]["pretrained"] == {"frozen": kind == "frozen", "weights": identity}
    assert content["inputs"]["preprocessing"] == est.inputs_.preprocessing.as_dict()
    loaded = IMCSwAVClustering.load(path)
    assert loaded.inputs_.preprocessing == est.inputs_.preprocessing
    assert _same_state(loaded.model_.state_dict(), est.model_.state_dict())
    for X in (images[:2], _images((1, 33, 61, 3), 5)):
        np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(loaded.labels_, est.labels_)


def test_a_checkpoint_needs_no_weights_file(images, weights, tmp_path, offline):
    file = tmp_path / "copy.safetensors"
    shutil.copy(weights["test_vit.safetensors"], file)
    est = _fit(images, "timm:test_vit", file, cache_dir=tmp_path / "cache")
    expected = est.predict_proba(images)
    est.save(tmp_path / "model.cpt")
    file.unlink()
    loaded = IMCSwAVClustering.load(tmp_path / "model.cpt")
    np.testing.assert_array_equal(loaded.predict_proba(images), expected)


def test_published_weights_load_from_the_checkpoint_offline(images, weights, tmp_path, monkeypatch):
    published = torch.load(weights["mobilenet.pth"], weights_only=True)
    urls = []

    def download(url, **kwargs):
        urls.append(url)
        return published

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    est = _fit(images[:2], "torchvision:mobilenet_v3_small", "pretrained", cache_dir=tmp_path, max_epochs=1)
    assert len(urls) == 1 and "mobilenet_v3_small" in urls[0]
    weights_enum = torchvision.models.get_model_weights("mobilenet_v3_small").DEFAULT
    assert est.architecture_["pretrained"] == {"frozen": True, "weights": f"torchvision {weights_enum}"}
    est.save(tmp_path / "model.cpt")

    def no_network(*args, **kwargs):
        raise OSError("no network in the tests")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    loaded = IMCSwAVClustering.load(tmp_path / "model.cpt")
    np.testing.assert_array_equal(loaded.predict_proba(images), est.predict_proba(images))
    assert len(urls) == 1


def test_path_parameters_are_saved_as_plain_data(images, weights, tmp_path):
    est = IMCSwAVClustering(
        **{
            **SMALL,
            "backbone": "timm:test_vit",
            "weights": weights["test_vit.safetensors"],
            "cache_dir": tmp_path,
        }
    ).fit(images)
    est.save(tmp_path / "model.cpt")
    loaded = IMCSwAVClustering.load(tmp_path / "model.cpt")
    assert loaded.get_params()["weights"] == str(weights["test_vit.safetensors"])
    np.testing.assert_array_equal(loaded.predict_proba(images), est.predict_proba(images))


@pytest.fixture(scope="module")
def timm_checkpoint(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "timm.cpt"
    fitted("timm").save(path)
    return path


def _set(section, key, value):
    return lambda content: content[section[0]][section[1]].__setitem__(key, value)


@pytest.mark.parametrize(
    "change, message",
    [
        (_set(("inputs", "preprocessing"), "std", [-0.5, 0.5, 0.5]), r"\['std'\] must be positive"),
        (_set(("inputs", "preprocessing"), "mean", [0.5, 0.5]), r"\['mean'\] must hold 3 numbers"),
        (_set(("inputs", "preprocessing"), "fixed_size", "yes"), r"\['fixed_size'\] must be bool"),
        (_set(("architecture", "pretrained"), "frozen", "yes"), r"\['frozen'\] must be bool, got str"),
        (_set(("architecture", "pretrained"), "frozen", 1), r"\['frozen'\] must be bool, got int"),
        (_set(("architecture", "pretrained"), "weights", 5), r"\['weights'\] must be str"),
        (lambda content: content["inputs"]["preprocessing"].pop("resize"), r"lacks \['resize'\]"),
        (_set(("inputs", "preprocessing"), "mode", "border"), "border"),
        (_set(("inputs", "preprocessing"), "interpolation", "lanczos"), "lanczos"),
        (_set(("inputs", "preprocessing"), "size", 500), "500"),
        (lambda content: content["inputs"].pop("preprocessing"), "preprocessing"),
    ],
)
def test_tampered_pretrained_sections_are_refused(timm_checkpoint, tmp_path, change, message):
    content = copy.deepcopy(load_checkpoint(timm_checkpoint))
    change(content)
    save_checkpoint(content, tmp_path / "tampered.cpt", "test")
    with pytest.raises(CheckpointError, match=message) as error:
        IMCSwAVClustering.load(tmp_path / "tampered.cpt")
    assert "tampered.cpt" in str(error.value)


def test_a_warm_start_continues_a_frozen_fit(fitted, images, monkeypatch, timm_checkpoint):
    def no_extraction(*args, **kwargs):
        raise AssertionError("the features were computed again")

    monkeypatch.setattr(frozen_features, "view_features", no_extraction)  # the cache has them
    for est in (copy.deepcopy(fitted("timm")), IMCSwAVClustering.load(timm_checkpoint)):
        encoder = _state(est.model_.encoder)
        head = _state(est.model_.head)
        est.set_params(warm_start=True, max_epochs=SMALL["max_epochs"] + 1)
        est.fit(images)
        assert est.n_iter_ == SMALL["max_epochs"] + 1 and len(est.history_) == est.n_iter_
        assert _same_state(_state(est.model_.encoder), encoder)
        assert not _same_state(_state(est.model_.head), head)


def test_a_warm_start_cannot_unfreeze_the_encoder(fitted, images):
    est = copy.deepcopy(fitted("timm"))
    est.set_params(warm_start=True, freeze_encoder=False, max_epochs=SMALL["max_epochs"] + 1)
    with pytest.raises(
        ValueError, match=r"warm_start continues the fitted network.*'frozen': True.*'frozen': False"
    ):
        est.fit(images)
    assert est.n_iter_ == SMALL["max_epochs"]


# ------------------------------------------------------------------ images of any size


@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_predict_on_images_of_another_size(fitted, library):
    est = fitted(library)
    for shape in [(2, 90, 31, 3), (2, 256, 256, 3), (2, 12, 12, 3)]:
        X = _images(shape, 3)
        proba = est.predict_proba(X)
        with torch.no_grad():
            logits = est.model_.head(torch.from_numpy(est.transform(X)))
        np.testing.assert_allclose(proba, torch.softmax(logits.double(), dim=1).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(est.predict(X), proba.argmax(axis=1))


def test_grey_images_are_rgb_ones(fitted, weights, images, tmp_path):
    grey = _images((3, 45, 38), 4)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    est = fitted("timm")
    np.testing.assert_array_equal(est.predict_proba(grey), est.predict_proba(rgb))
    np.testing.assert_array_equal(est.transform(grey[:, None]), est.transform(rgb))  # (N, 1, H, W) too
    on_grey = _fit(images[..., 0], "timm:test_vit", weights["test_vit.safetensors"], cache_dir=tmp_path)
    assert on_grey.input_shape_ == (3, 168, 168)
    np.testing.assert_array_equal(on_grey.predict_proba(grey), on_grey.predict_proba(rgb))


# ------------------------------------------------------------------ the parameters


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(backbone="resnet18", weights="FILE"), "needs a pretrained backbone.*backbone='resnet18'"),
        (dict(weights="MISSING"), r"missing\.pth' is not a file"),
        (dict(weights="FOLDER"), "is not a file"),
        (dict(weights=3), "weights"),
        (dict(backbone="keras:resnet"), "'keras:resnet' names no pretrained network"),
        (dict(backbone="torchvision:resnet5"), "no network 'resnet5'. Did you mean 'torchvision:resnet50'"),
        (dict(backbone="resnet18", freeze_encoder=True), "freeze_encoder=True needs a pretrained backbone"),
        (dict(normalization=([0.5] * 3, [0.2] * 3)), "normalization is set.*leave normalization at None"),
    ],
)
def test_parameter_errors_name_the_problem(images, weights, tmp_path, params, message):
    paths = {"FILE": weights["test_vit.safetensors"], "MISSING": tmp_path / "missing.pth", "FOLDER": tmp_path}
    params = {
        key: paths.get(value, value) if isinstance(value, str) else value for key, value in params.items()
    }
    est = IMCSwAVClustering(**{**SMALL, "backbone": "timm:test_vit", **params})
    with pytest.raises((ValueError, TypeError), match=message):
        est.fit(images)
    assert not hasattr(est, "model_")


def test_a_missing_library_names_the_package(images, monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(ValueError, match="needs the package open_clip_torch: pip install open_clip_torch"):
        IMCSwAVClustering(**{**SMALL, "backbone": "open_clip:ViT-S-32-alt"}).fit(images)


def test_published_weights_offline_are_one_clear_error(images, offline):
    est = IMCSwAVClustering(
        **{**SMALL, "backbone": "torchvision:mobilenet_v3_small", "weights": "pretrained"}
    )
    with pytest.raises(ValueError, match="could not be fetched") as error:
        est.fit(images)
    assert str(offline / "torch" / "hub") in str(error.value) and "weights=PATH" in str(error.value)
    assert not hasattr(est, "model_")
