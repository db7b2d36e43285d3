"""Pretrained encoders of torchvision, timm and open_clip: the backbone and weights arguments, local weights
files loaded exactly, random weights by seed, the preprocessing each library states, the errors of what
cannot be loaded (wrong network, missing library, published weights offline), and the encoder wrapper.

Nothing is downloaded: the weights files are random networks written here in each library's format."""

import hashlib
import sys

import open_clip
import pytest
import safetensors.torch
import timm
import torch
import torchvision
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn

from imc_cluster.model.build import load_pretrained
from imc_cluster.model.pretrained import (
    PretrainedEncoder,
    check_weights,
    create_pretrained,
    file_identity,
    network_preprocessing,
    parse_backbone,
)

#: the small networks of each library the tests load: backbone, and the prefix of the encoder's weights in
#: the library's file
NETWORKS = {
    "torchvision": ("torchvision:mobilenet_v3_small", ""),
    "timm": ("timm:test_vit", ""),
    "open_clip": ("open_clip:ViT-S-32-alt", "visual."),
}


def _perturbed(state: dict) -> dict:
    """A state dict whose every float tensor (BatchNorm statistics too) differs from any initialisation."""
    return {
        name: tensor + torch.rand_like(tensor) * 0.01 if tensor.is_floating_point() else tensor
        for name, tensor in state.items()
    }


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict:
    """Weights files of the small networks, by library (timm's in both formats), and their state dicts."""
    folder = tmp_path_factory.mktemp("weights")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        states = {
            "torchvision": _perturbed(torchvision.models.get_model("mobilenet_v3_small").state_dict()),
            "timm": _perturbed(timm.create_model("test_vit").state_dict()),
            "open_clip": _perturbed(open_clip.create_model("ViT-S-32-alt").state_dict()),
        }
    files = {
        "torchvision": folder / "mobilenet.pth",
        "timm": folder / "test_vit.pth",
        "timm-safetensors": folder / "test_vit.safetensors",
        "open_clip": folder / "vit_s_32_alt.pt",
    }
    torch.save(states["torchvision"], files["torchvision"])
    torch.save(states["timm"], files["timm"])
    safetensors.torch.save_file(states["timm"], files["timm-safetensors"])
    torch.save(states["open_clip"], files["open_clip"])
    return {"files": files, "states": states}


# ------------------------------------------------------------------ the arguments


@pytest.mark.parametrize(
    "backbone, parsed",
    [
        ("resnet18", None),
        ("auto", None),
        ("torchvision:resnet50", ("torchvision", "resnet50")),
        ("timm:vit_small_patch14_dinov2.lvd142m", ("timm", "vit_small_patch14_dinov2.lvd142m")),
        ("open_clip:ViT-B-32", ("open_clip", "ViT-B-32")),
    ],
)
def test_parse_backbone(backbone, parsed):
    assert parse_backbone(backbone) == parsed


@pytest.mark.parametrize("backbone", ["keras:resnet", "timm:", "Timm:resnet18", ":resnet18"])
def test_unknown_library_is_refused(backbone):
    with pytest.raises(ValueError, match=f"backbone '{backbone}' names no pretrained network") as error:
        parse_backbone(backbone)
    assert "['open_clip', 'timm', 'torchvision']" in str(error.value)


def test_check_weights(tmp_path):
    file = tmp_path / "w.pth"
    file.write_bytes(b"weights")
    for accepted in (None, "pretrained", file, str(file)):
        check_weights(accepted, "timm:test_vit")
    check_weights(None, "resnet18")
    with pytest.raises(ValueError, match=r"weights='pretrained' needs a pretrained backbone.*'resnet18'"):
        check_weights("pretrained", "resnet18")
    with pytest.raises(ValueError, match="needs a pretrained backbone"):
        check_weights(file, "auto")
    with pytest.raises(TypeError, match="weights must be None, 'pretrained' or a file path, got int"):
        check_weights(3, "timm:test_vit")


@pytest.mark.parametrize("where", ["missing.pth", "."], ids=["missing", "a folder"])
def test_weights_that_are_no_file_are_refused_when_read(tmp_path, where):
    check_weights(tmp_path / where, "timm:test_vit")  # a fitted model holds its weights: no file needed
    with pytest.raises(ValueError, match=r"is not a file: give the path of a weights file"):
        create_pretrained("timm:test_vit", tmp_path / where)


@pytest.mark.parametrize(
    "backbone, meant",
    [
        ("torchvision:resnet5", "'torchvision:resnet50'"),
        ("timm:test_vitt", "'timm:test_vit'"),
        ("open_clip:ViT-S-32-alts", "'open_clip:ViT-S-32-alt'"),
    ],
)
def test_unknown_network_names_the_closest(backbone, meant):
    library, name = backbone.split(":")
    with pytest.raises(ValueError, match=f"{library} has no network '{name}'.*Did you mean.*{meant}"):
        create_pretrained(backbone, None)


def test_a_name_close_to_nothing_gets_no_hint():
    with pytest.raises(ValueError, match=r"has no network 'zzzzzzzz'\.$"):
        create_pretrained("torchvision:zzzzzzzz", None)


@pytest.mark.parametrize(
    "backbone, package", [("timm:test_vit", "timm"), ("open_clip:ViT-S-32-alt", "open_clip_torch")]
)
def test_a_missing_library_names_the_package_to_install(monkeypatch, backbone, package):
    monkeypatch.setitem(sys.modules, backbone.split(":")[0], None)
    with pytest.raises(ValueError, match=f"needs the package {package}: pip install {package}"):
        create_pretrained(backbone, None)


# ------------------------------------------------------------------ loading


@pytest.mark.parametrize("library, file", [*((lib, lib) for lib in NETWORKS), ("timm", "timm-safetensors")])
def test_a_local_weights_file_gives_exactly_its_weights(weights, library, file):
    backbone, prefix = NETWORKS[library]
    path = weights["files"][file]
    saved = weights["states"][library]
    pretrained = create_pretrained(backbone, path)
    state = pretrained.network.state_dict()
    assert len(state) > 20
    for name, tensor in state.items():
        assert torch.equal(tensor, saved[prefix + name]), name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert pretrained.weights_identity == f"file {path.name} sha256:{digest}" == file_identity(path)
    assert not pretrained.network.training


def test_feature_dimensions_are_the_libraries():
    assert create_pretrained("torchvision:mobilenet_v3_small", None).out_features == 576
    assert create_pretrained("timm:test_vit", None).out_features == timm.create_model("test_vit").num_features
    assert create_pretrained("torchvision:resnet18", None).out_features == 512


@pytest.mark.parametrize("library", ["torchvision", "timm"])  # open_clip's is seeded alike: slow to build
def test_random_weights_follow_the_seed(library):
    backbone = NETWORKS[library][0]
    rng = torch.random.get_rng_state()
    first = load_pretrained(backbone, None, seed=3).network.state_dict()
    again = load_pretrained(backbone, None, seed=3).network.state_dict()
    assert torch.equal(torch.random.get_rng_state(), rng)  # the caller's random state is left alone
    assert first.keys() == again.keys()
    assert all(torch.equal(first[name], again[name]) for name in first)
    other = load_pretrained(backbone, None, seed=4).network.state_dict()
    assert any(not torch.equal(first[name], other[name]) for name in first)
    assert load_pretrained(backbone, None, seed=3).weights_identity is None


@pytest.mark.parametrize(
    "backbone, file",
    [
        ("torchvision:resnet18", "torchvision"),
        ("timm:test_resnet", "timm"),
        ("open_clip:ViT-S-32-alt", "torchvision"),
    ],
)
def test_a_weights_file_of_another_network_is_an_error(weights, backbone, file):
    with pytest.raises(
        (RuntimeError, ValueError), match=r"state_dict|[Mm]issing|[Uu]nexpected|size mismatch"
    ):
        create_pretrained(backbone, weights["files"][file])


# ------------------------------------------------------------------ the published weights, offline


def test_torchvision_published_weights_offline(offline):
    with pytest.raises(ValueError) as error:
        create_pretrained("torchvision:mobilenet_v3_small", "pretrained")
    message = str(error.value)
    assert str(offline / "torch" / "hub") in message and "weights=PATH" in message
    assert "no network in the tests" in message


@pytest.mark.parametrize("backbone", ["timm:test_vit", "open_clip:RN50"])
def test_hugging_face_published_weights_offline(offline, backbone):
    with pytest.raises(ValueError, match=f"published weights of '{backbone}' could not be fetched") as error:
        create_pretrained(backbone, "pretrained")
    assert "HF_HOME" in str(error.value) and "weights=PATH" in str(error.value)
    assert error.value.__cause__ is not None  # the library's own error is kept


@pytest.mark.parametrize(
    "backbone, identity",
    [
        ("torchvision:mobilenet_v3_small", "torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1"),
        ("timm:test_vit", "timm timm/test_vit.r160_in1k"),
    ],
)
def test_building_without_loading_fetches_nothing(offline, backbone, identity):
    pretrained = create_pretrained(backbone, "pretrained", load=False)  # a checkpoint restores the weights
    assert pretrained.weights_identity == identity


def test_open_clip_network_without_published_weights(offline):
    with pytest.raises(
        ValueError, match="open_clip publishes no weights for 'ViT-S-32-alt': pass weights=PATH"
    ):
        create_pretrained("open_clip:ViT-S-32-alt", "pretrained")


# ------------------------------------------------------------------ preprocessing


def test_torchvision_preprocessing():
    evaluation = torchvision.models.get_model_weights("resnet18").DEFAULT.transforms()
    p = network_preprocessing("torchvision:resnet18")
    assert (p.size, p.resize, p.mode, p.interpolation, p.fixed_size) == (
        224,
        256,
        "shortest",
        "bilinear",
        False,
    )
    assert p.mean == tuple(evaluation.mean) and p.std == tuple(evaluation.std)
    assert network_preprocessing("torchvision:vit_b_16").fixed_size


@pytest.mark.parametrize("name, fixed", [("test_vit", True), ("test_resnet", False)])
def test_timm_preprocessing(name, fixed):
    config = timm.data.resolve_model_data_config(timm.create_model(name))
    p = network_preprocessing(f"timm:{name}")
    side = config["input_size"][1]
    assert (p.size, p.resize, p.mode) == (side, int(side / config["crop_pct"]), "shortest")
    assert (p.interpolation, p.mean, p.std) == (config["interpolation"], config["mean"], config["std"])
    assert p.fixed_size is fixed


def test_open_clip_preprocessing():
    p = network_preprocessing("open_clip:ViT-S-32-alt")
    assert (p.size, p.resize, p.mode, p.interpolation, p.fixed_size) == (
        224,
        224,
        "shortest",
        "bicubic",
        True,
    )
    assert p.mean == tuple(OPENAI_DATASET_MEAN) and p.std == tuple(OPENAI_DATASET_STD)


# ------------------------------------------------------------------ the encoder


def _tiny_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_a_frozen_encoder_has_nothing_to_train_and_stays_in_evaluation_mode():
    encoder = PretrainedEncoder(_tiny_network(), 4, frozen=True)
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training and not any(m.training for m in encoder.modules())
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder(torch.randn(4, 3, 6, 6) * 5 + 3)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_an_unfrozen_encoder_trains_each_view_apart():
    encoder = PretrainedEncoder(_tiny_network(), 4, frozen=False).train()
    assert all(p.requires_grad for p in encoder.parameters()) and encoder.network[1].training
    views = torch.randn(3, 2, 3, 6, 6) + torch.tensor([0.0, 4.0]).view(1, 2, 1, 1, 1)  # image-major
    together = encoder(views.flatten(0, 1), n_views=2).unflatten(0, (3, 2))
    for view in range(2):  # the BatchNorm statistics of each view are its own
        alone = PretrainedEncoder(_tiny_network(), 4, frozen=False).train()(views[:, view])
        assert torch.allclose(together[:, view], alone, atol=1e-5)
    mixed = PretrainedEncoder(_tiny_network(), 4, frozen=False).train()(views.flatten(0, 1))
    assert not torch.allclose(together.flatten(0, 1), mixed, atol=1e-3)
