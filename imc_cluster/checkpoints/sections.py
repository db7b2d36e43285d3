"""The sections of a checkpoint and their validation.

A checkpoint holds six sections (:data:`SECTIONS`): the estimator's parameters, the fitted architecture, the
input encoder, the other fitted attributes, the network weights and the training state. Reading one checks
every section's keys and types, the consistency between sections (the input shape and the number of
features, a pretrained network and its preprocessing, the candidate Ks and the chosen one), and refuses
weights that are not finite.
"""

from __future__ import annotations

import math

import torch

__all__ = ["SECTIONS", "validate_sections"]

#: the sections of a checkpoint, in the order they are validated
SECTIONS = ("params", "architecture", "inputs", "fitted", "model", "training")


def _expect(value, kinds, where: str):
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _as_tuple(kinds)):
        names = " or ".join(k.__name__ for k in _as_tuple(kinds))
        raise TypeError(f"{where} must be {names}, got {type(value).__name__}")
    return value


def _as_tuple(kinds) -> tuple:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _keys(section: dict, where: str, required: set[str], optional: frozenset[str] = frozenset()) -> None:
    _expect(section, dict, where)
    missing, unknown = required - set(section), set(section) - required - optional
    if missing or unknown:
        raise KeyError(f"{where} lacks {sorted(missing)} or has unknown {sorted(unknown)}")


def _numbers(value, where: str, length: int | None = None) -> None:
    _expect(value, list, where)
    if length is not None and len(value) != length:
        raise ValueError(f"{where} must hold {length} numbers, got {len(value)}")
    for item in value:
        if not math.isfinite(_expect(item, (int, float), where)):
            raise ValueError(f"{where} holds a non-finite number")


def _finite_tensor(value, where: str, dims: int | None = None) -> None:
    _expect(value, torch.Tensor, where)
    if dims is not None and value.dim() != dims:
        raise ValueError(f"{where} must be a {dims}-D tensor, got shape {tuple(value.shape)}")
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{where} holds NaN or infinite values")


_ARCHITECTURE = {
    "backbone": str,
    "in_size": int,
    "width": int,
    "stem_pool": bool,
    "n_clusters": (int, list),  # a list of candidate Ks until a fit chooses one
    "n_prototypes": int,
    "projection_dim": int,
    "head_hidden_dim": int,
}
#: architecture entries that earlier versions did not save
_ARCHITECTURE_OPTIONAL = {"n_heads": int}
_FITTED = {"n_features_in_": int, "n_iter_": int, "history_": list}
_FITTED_OPTIONAL = {
    "labels_": torch.Tensor,
    "feature_names_in_": list,
    "best_head_": int,
    "n_clusters_": int,
    "k_scores_": dict,
}
_TRAINING = {
    "optimizer": dict,
    "updates": int,
    "epoch": int,
    "config": dict,
    "generator": torch.Tensor,
    "generator_device": str,
    "seed": int,
}


def validate_sections(content: dict) -> None:
    """Check the keys, types and consistency of every section of a checkpoint's ``content``.

    Raises
    ------
    KeyError, TypeError or ValueError
        Naming the first entry that is missing, unknown, of the wrong type or inconsistent.
    """
    _keys(content, "the checkpoint", set(SECTIONS))
    params = _expect(content["params"], dict, "params")
    for key in params:
        _expect(key, str, "a parameter name")
    optional = frozenset({"pretrained", *_ARCHITECTURE_OPTIONAL})
    _keys(content["architecture"], "architecture", set(_ARCHITECTURE), optional)
    for key, kind in {**_ARCHITECTURE, **_ARCHITECTURE_OPTIONAL}.items():
        if key in content["architecture"]:
            _expect(content["architecture"][key], kind, f"architecture[{key!r}]")
    if "pretrained" in content["architecture"]:
        _validate_pretrained(content["architecture"]["pretrained"])
    if ("pretrained" in content["architecture"]) != (content["inputs"].get("preprocessing") is not None):
        raise ValueError("a pretrained network's architecture and its inputs['preprocessing'] come together")
    _validate_inputs(content["inputs"])
    _validate_fitted(content["fitted"])
    _validate_n_clusters(content["architecture"]["n_clusters"], content["fitted"])
    model = _expect(content["model"], dict, "model")
    for name, tensor in model.items():
        _finite_tensor(tensor, f"model weight {_expect(name, str, 'a weight name')!r}")
    _keys(content["training"], "training", set(_TRAINING))
    for key, kind in _TRAINING.items():
        _expect(content["training"][key], kind, f"training[{key!r}]")
    _keys(content["training"]["optimizer"], "training['optimizer']", {"state", "param_groups"})
    if min(content["training"]["updates"], content["training"]["epoch"]) < 0:
        raise ValueError("training['updates'] and training['epoch'] must not be negative")
    shape, size = content["inputs"]["sample_shape"], content["fitted"]["n_features_in_"]
    if size != math.prod(shape):
        raise ValueError(f"fitted['n_features_in_'] = {size} does not match inputs['sample_shape'] = {shape}")


def _validate_n_clusters(n_clusters, fitted: dict) -> None:
    """The architecture's K, or its candidate Ks (increasing ints >= 2) before a fit chose one; the fitted
    ``n_clusters_`` (that K) and ``k_scores_`` (a finite score per candidate, the chosen one among them)."""
    if isinstance(n_clusters, list):
        for k in n_clusters:
            _expect(k, int, "a candidate of architecture['n_clusters']")
        if len(n_clusters) < 2 or n_clusters[0] < 2 or n_clusters != sorted(set(n_clusters)):
            raise ValueError("architecture['n_clusters'] must be increasing candidate Ks >= 2, at least two")
        if {"labels_", "n_clusters_", "k_scores_"} & set(fitted):
            raise ValueError("a network of candidate Ks has no labels_, n_clusters_ or k_scores_ yet")
    elif n_clusters < 1:
        raise ValueError("architecture['n_clusters'] must be positive")
    if "n_clusters_" in fitted and fitted["n_clusters_"] != n_clusters:
        raise ValueError(
            f"fitted['n_clusters_'] = {fitted['n_clusters_']} is not the network's n_clusters, {n_clusters}"
        )
    if "k_scores_" in fitted:
        _validate_k_scores(fitted["k_scores_"], fitted.get("n_clusters_"))


def _validate_k_scores(scores: dict, chosen: int | None) -> None:
    """A finite score for each of at least two candidate Ks >= 2, the chosen one among them."""
    for k, score in scores.items():
        if _expect(k, int, "a candidate of fitted['k_scores_']") < 2:
            raise ValueError("fitted['k_scores_'] holds a candidate K < 2")
        if not math.isfinite(_expect(score, float, f"fitted['k_scores_'][{k}]")):
            raise ValueError(f"fitted['k_scores_'][{k}] is not finite")
    if len(scores) < 2 or chosen not in scores:
        raise ValueError("fitted['k_scores_'] must score at least two candidates, n_clusters_ among them")


def _validate_inputs(inputs: dict) -> None:
    names = {
        "image_shape",
        "backbone",
        "is_image",
        "sample_shape",
        "pixel_range",
        "pixel_mean",
        "pixel_std",
        "feature_mean",
        "feature_scale",
    }
    _keys(inputs, "inputs", names, frozenset({"preprocessing"}))
    if inputs.get("preprocessing") is not None:
        _validate_preprocessing(inputs["preprocessing"])
    _expect(inputs["backbone"], str, "inputs['backbone']")
    if inputs["image_shape"] is not None:
        _numbers(inputs["image_shape"], "inputs['image_shape']")
    image = _expect(inputs["is_image"], bool, "inputs['is_image']")
    shape = _expect(inputs["sample_shape"], list, "inputs['sample_shape']")
    if len(shape) != (3 if image else 1) or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ValueError(f"inputs['sample_shape'] is not the shape of one {'image' if image else 'vector'}")
    unused = ("feature_mean", "feature_scale") if image else ("pixel_range", "pixel_mean", "pixel_std")
    if any(inputs[key] is not None for key in unused):
        raise ValueError(f"inputs hold {' and '.join(unused)} of the other kind of input")
    if image:
        _numbers(inputs["pixel_range"], "inputs['pixel_range']", 2)
        if inputs["pixel_range"][0] >= inputs["pixel_range"][1]:
            raise ValueError("inputs['pixel_range'] must be an increasing pair")
        for key in ("pixel_mean", "pixel_std"):
            _numbers(inputs[key], f"inputs[{key!r}]", shape[0])
        if min(inputs["pixel_std"]) <= 0:
            raise ValueError("inputs['pixel_std'] must be positive")
    else:
        for key in ("feature_mean", "feature_scale"):
            _finite_tensor(inputs[key], f"inputs[{key!r}]", dims=1)
            if inputs[key].shape[0] != shape[0]:
                raise ValueError(
                    f"inputs[{key!r}] has {inputs[key].shape[0]} entries for {shape[0]} features"
                )


def _validate_pretrained(pretrained) -> None:
    _keys(
        _expect(pretrained, dict, "architecture['pretrained']"),
        "architecture['pretrained']",
        {"frozen", "weights"},
    )
    _expect(pretrained["frozen"], bool, "architecture['pretrained']['frozen']")
    if pretrained["weights"] is not None:
        _expect(pretrained["weights"], str, "architecture['pretrained']['weights']")


def _validate_preprocessing(preprocessing) -> None:
    where = "inputs['preprocessing']"
    fields = {"size", "resize", "mode", "interpolation", "mean", "std", "fixed_size"}
    _keys(_expect(preprocessing, dict, where), where, fields)
    for key in ("size", "resize"):
        _expect(preprocessing[key], int, f"{where}[{key!r}]")
    if not 1 <= preprocessing["size"] <= preprocessing["resize"]:
        raise ValueError(
            f"{where} must have 1 <= size <= resize, got size {preprocessing['size']} and resize "
            f"{preprocessing['resize']}"
        )
    for key in ("mode", "interpolation"):
        _expect(preprocessing[key], str, f"{where}[{key!r}]")
    _expect(preprocessing["fixed_size"], bool, f"{where}['fixed_size']")
    for key in ("mean", "std"):
        _numbers(preprocessing[key], f"{where}[{key!r}]", 3)
    if min(preprocessing["std"]) <= 0:
        raise ValueError(f"{where}['std'] must be positive")


def _plain_record_value(value, where: str) -> None:
    """A history record's value: a number, a bool, a string, None, or a list of them."""
    if isinstance(value, list):
        for item in value:
            _plain_record_value(item, where)
    elif value is not None:
        _expect(value, (int, float, bool, str), where)


def _validate_fitted(fitted: dict) -> None:
    _keys(fitted, "fitted", set(_FITTED), frozenset(_FITTED_OPTIONAL))
    for key, kind in {**_FITTED, **_FITTED_OPTIONAL}.items():
        if key in fitted:
            _expect(fitted[key], kind, f"fitted[{key!r}]")
    if fitted["n_features_in_"] < 1 or fitted["n_iter_"] < 0:
        raise ValueError("fitted['n_features_in_'] must be positive and fitted['n_iter_'] not negative")
    for record in fitted["history_"]:
        for key, value in _expect(record, dict, "a history_ record").items():
            _expect(key, str, "a history_ key")
            _plain_record_value(value, f"history_[{key!r}]")
    if "labels_" in fitted and (fitted["labels_"].dtype != torch.int64 or fitted["labels_"].dim() != 1):
        raise ValueError("fitted['labels_'] must be a 1-D int64 tensor")
    for name in fitted.get("feature_names_in_", []):
        _expect(name, str, "a feature name")
