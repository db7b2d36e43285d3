"""Pretrained encoders from torchvision, timm and open_clip, with the preprocessing their own library gives.

A backbone ``"LIBRARY:NAME"`` (``"torchvision:resnet50"``, ``"timm:vit_small_patch14_dinov2"``,
``"open_clip:ViT-B-32"``) is that library's network without its classifier, mapping images to a feature
vector. Its weights are random (``weights=None``), the library's published ones (``"pretrained"``, fetched
and cached by the library itself on first use), or a local file in the library's format (a state dict saved
with ``torch.save`` or, for timm, also safetensors). timm and open_clip are optional and imported only when
asked for.

The network's preprocessing is read from its library
(:class:`~imc_cluster.data.resizing.Preprocessing`): input side, the resize before the centre crop, the
interpolation and the normalisation; :mod:`imc_cluster.data.resizing` applies it.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from imc_cluster.data.resizing import Preprocessing

__all__ = [
    "LIBRARIES",
    "PRETRAINED",
    "PretrainedEncoder",
    "parse_backbone",
    "check_weights",
    "network_preprocessing",
    "create_pretrained",
]

#: the libraries a backbone may come from, with the extra that installs each
LIBRARIES = {"torchvision": "torchvision", "timm": "timm", "open_clip": "open_clip_torch"}
#: the ``weights`` value that asks for the library's published weights
PRETRAINED = "pretrained"


class PretrainedEncoder(nn.Module):
    """A library's network without its classifier, as an IMC-SwAV encoder.

    Parameters
    ----------
    network : nn.Module
        Maps normalised images ``(N, 3, size, size)`` to features ``(N, out_features)``.
    out_features : int
        Dimension of the features.
    frozen : bool
        A frozen encoder has no trainable parameters and stays in evaluation mode (its BatchNorm statistics
        never change).
    """

    def __init__(self, network: nn.Module, out_features: int, frozen: bool) -> None:
        super().__init__()
        self.network = network
        self.out_features = out_features
        self.frozen = frozen
        if frozen:
            self.network.requires_grad_(False)
            self.network.eval()

    def train(self, mode: bool = True) -> PretrainedEncoder:
        """Set the training mode (a frozen encoder stays in evaluation mode)."""
        super().train(mode and not self.frozen)
        return self

    def forward(self, x: torch.Tensor, n_views: int = 1) -> torch.Tensor:
        """Features of images ``x``: ``n_views`` image-major views of each image, each view passed on its
        own (a network's BatchNorm normalises every view apart, as the published per-view BatchNorm does)."""
        if n_views == 1:
            return self.network(x).flatten(1)
        views = x.unflatten(0, (-1, n_views))
        features = [self.network(views[:, v]).flatten(1) for v in range(n_views)]
        return torch.stack(features, dim=1).flatten(0, 1)


def parse_backbone(backbone: str) -> tuple[str, str] | None:
    """``(library, name)`` of a pretrained backbone ``"LIBRARY:NAME"``, or None for our own networks."""
    if ":" not in backbone:
        return None
    library, name = backbone.split(":", 1)
    if library not in LIBRARIES or not name:
        raise ValueError(
            f"backbone {backbone!r} names no pretrained network: use 'LIBRARY:NAME' with LIBRARY one of "
            f"{sorted(LIBRARIES)} (for instance 'torchvision:resnet50', 'timm:vit_small_patch14_dinov2', "
            "'open_clip:ViT-B-32')."
        )
    return library, name


def check_weights(weights, backbone: str) -> None:
    """Validate ``weights``: None, ``"pretrained"`` or a file path, and only with a pretrained backbone (the
    file must exist when the weights are read, by :func:`create_pretrained`: a fitted model holds them)."""
    if weights is None:
        return
    if parse_backbone(backbone) is None:
        raise ValueError(
            f"weights={weights!r} needs a pretrained backbone ('torchvision:NAME', 'timm:NAME' or "
            f"'open_clip:NAME'), but backbone={backbone!r}."
        )
    if weights == PRETRAINED:
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be None, 'pretrained' or a file path, got {type(weights).__name__}.")


def _check_file(weights) -> None:
    if not Path(weights).is_file():
        raise ValueError(
            f"weights={os.fspath(weights)!r} is not a file: give the path of a weights file, 'pretrained' "
            "for the published weights, or None for random weights."
        )


def _library(library: str):
    try:
        return importlib.import_module(library)
    except ImportError:
        raise ValueError(
            f"backbone '{library}:...' needs the package {LIBRARIES[library]}: "
            f"pip install {LIBRARIES[library]} (or the extra imc-cluster[{library}])."
        ) from None


def _unknown(library: str, name: str, known: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(repr(f'{library}:{c}') for c in close)}?" if close else ""
    return ValueError(f"{library} has no network {name!r}.{hint}")


def _download_error(backbone: str, where: str, error: Exception) -> ValueError:
    return ValueError(
        f"The published weights of {backbone!r} could not be fetched ({type(error).__name__}: {error}) and "
        f"are not in {where}: connect to the network once, or download the weights file elsewhere and pass "
        "weights=PATH (--weights PATH)."
    )


def file_identity(path) -> str:
    """The identity of a local weights file: its name and the SHA-256 of its content."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return f"file {Path(path).name} sha256:{digest.hexdigest()}"


@contextlib.contextmanager
def _quiet_logging():
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _strip_classifier(network: nn.Module) -> None:
    """Replace a torchvision network's classifier by the identity (its features come out instead)."""
    for attribute in ("fc", "heads", "head", "classifier"):
        if isinstance(getattr(network, attribute, None), nn.Module):
            setattr(network, attribute, nn.Identity())
            return
    raise ValueError(f"torchvision's {type(network).__name__} has no classifier we know to remove.")


def _torchvision(name: str, weights, load: bool):
    models = _library("torchvision").models
    known = models.list_models(module=models)
    if name not in known:
        raise _unknown("torchvision", name, known)
    published = models.get_model_weights(name).DEFAULT
    network = models.get_model(name, weights=None)
    identity = None
    if weights == PRETRAINED:
        identity = f"torchvision {published}"
        if load:
            try:
                state = torch.hub.load_state_dict_from_url(published.url, progress=False, map_location="cpu")
            except Exception as error:  # the library's download failed: no network, no cached copy
                raise _download_error(f"torchvision:{name}", torch.hub.get_dir(), error) from error
            network.load_state_dict(state)
    elif weights is not None:
        identity = file_identity(weights)
        if load:
            network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    _strip_classifier(network)
    evaluation = published.transforms()
    preprocessing = Preprocessing(
        evaluation.crop_size[0],
        evaluation.resize_size[0],
        "shortest",
        evaluation.interpolation.value,
        tuple(evaluation.mean),
        tuple(evaluation.std),
        name.startswith(("vit_", "swin_", "maxvit_")),
    )
    return network, preprocessing, identity


def _timm(name: str, weights, load: bool):
    timm = _library("timm")
    if not timm.is_model(name.split(".")[0]):
        raise _unknown("timm", name, timm.list_models())
    try:
        network = timm.create_model(name, pretrained=load and weights == PRETRAINED, num_classes=0)
    except Exception as error:  # the library's download failed: no network, no cached copy
        if weights != PRETRAINED:
            raise
        raise _download_error(f"timm:{name}", _hugging_face_cache(), error) from error
    if load and weights not in (None, PRETRAINED):
        _load_timm_file(timm, network, weights)
    config = timm.data.resolve_model_data_config(network)
    side = config["input_size"][1]
    mode = {"center": "shortest", "squash": "squash"}.get(config.get("crop_mode", "center"), "unsupported")
    preprocessing = Preprocessing(
        side,
        math.floor(side / config["crop_pct"]),
        mode,
        config["interpolation"],
        tuple(config["mean"]),
        tuple(config["std"]),
        bool(network.pretrained_cfg.get("fixed_input_size", False)),
    )
    identity = None
    if weights == PRETRAINED:
        identity = f"timm {network.pretrained_cfg.get('hf_hub_id') or name}"
    elif weights is not None:
        identity = file_identity(weights)
    return network, preprocessing, identity


def _load_timm_file(timm, network: nn.Module, weights) -> None:
    """A timm weights file (PyTorch or safetensors) into ``network``, strictly but for the classifier, which
    the feature network has not (a file of another network is an error, not a partial load)."""
    classifiers = network.pretrained_cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    state = timm.models.load_state_dict(os.fspath(weights))
    kept = {k: v for k, v in state.items() if not k.startswith(tuple(f"{c}." for c in classifiers))}
    network.load_state_dict(kept)


def _hugging_face_cache() -> str:
    """Where timm and open_clip keep what they download."""
    try:  # installed with timm and open_clip
        folder = importlib.import_module("huggingface_hub.constants").HF_HUB_CACHE
    except ImportError:
        folder = "~/.cache/huggingface/hub"
    return f"the Hugging Face cache {folder} (HF_HOME moves it)"


def _open_clip(name: str, weights, load: bool):
    open_clip = _library("open_clip")
    if name not in open_clip.list_models():
        raise _unknown("open_clip", name, open_clip.list_models())
    source, identity = None, None
    if weights == PRETRAINED:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if not tags:
            raise ValueError(f"open_clip publishes no weights for {name!r}: pass weights=PATH.")
        source, identity = tags[0], f"open_clip {name} {tags[0]}"
    elif weights is not None:
        source, identity = os.fspath(weights), file_identity(weights)
    try:
        with _quiet_logging():  # open_clip logs a warning for every network without weights
            model = open_clip.create_model(name, pretrained=source if load else None)
    except Exception as error:  # the library's download failed: no network, no cached copy
        if weights != PRETRAINED:
            raise
        raise _download_error(f"open_clip:{name}", _hugging_face_cache(), error) from error
    config = model.visual.preprocess_cfg
    side = config["size"] if isinstance(config["size"], int) else config["size"][0]
    mode = {"shortest": "shortest", "squash": "squash"}.get(
        config.get("resize_mode", "shortest"), "unsupported"
    )
    preprocessing = Preprocessing(
        side, side, mode, config["interpolation"], tuple(config["mean"]), tuple(config["std"]), True
    )
    return model.visual, preprocessing, identity


_CREATORS = {"torchvision": _torchvision, "timm": _timm, "open_clip": _open_clip}


@dataclass
class Pretrained:
    """A library's network, ready to wrap: the feature network, its preprocessing, the identity of its
    weights (None for random ones), and its feature dimension."""

    network: nn.Module
    preprocessing: Preprocessing
    weights_identity: str | None
    out_features: int


def network_preprocessing(backbone: str) -> Preprocessing:
    """The preprocessing of the pretrained network ``backbone`` (its library's configuration; no weights are
    read): a folder's images can be decoded at its ``resize`` side before a fit."""
    library, name = parse_backbone(backbone)
    return _CREATORS[library](name, None, False)[1]


def create_pretrained(backbone: str, weights, load: bool = True) -> Pretrained:
    """The network ``backbone`` (``"LIBRARY:NAME"``) with ``weights`` (None, ``"pretrained"`` or a file path;
    ``load=False`` builds the network without reading or fetching them, for weights restored afterwards)."""
    library, name = parse_backbone(backbone)
    if load and weights not in (None, PRETRAINED):
        _check_file(weights)
    try:
        network, preprocessing, identity = _CREATORS[library](name, weights, load)
    except RuntimeError as error:  # a state dict of another network
        file = os.fspath(weights)
        raise ValueError(f"The weights file {file!r} does not fit {backbone!r}: {error}") from None
    network.eval()
    with torch.no_grad():
        probe = network(torch.zeros(1, 3, preprocessing.size, preprocessing.size))
    return Pretrained(network, preprocessing, identity, int(probe.flatten(1).shape[1]))
