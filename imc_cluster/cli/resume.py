"""What ``train`` and ``test`` take from a checkpoint: the size at which a folder's images are read (the
checkpoint's input, as ``predict`` reads them), the check that the data set fits its network, and a resumed
``train``'s settings: the checkpoint's parameters, changed by the flags given on the command line (never by
defaults or presets), and refused where they would change its network.
"""

from __future__ import annotations

import argparse

import numpy as np

from imc_cluster.cli.flags import PARAM_FLAGS, flag_params, given_params
from imc_cluster.data.datasets import ImageSet
from imc_cluster.estimator.estimator import IMCSwAVClustering
from imc_cluster.estimator.params import ARCHITECTURE_PARAMS

__all__ = ["load_size", "refuse_new_network", "refuse_other_size", "check_data", "resume"]


def _fitted_size(estimator: IMCSwAVClustering) -> tuple[int, int] | None:
    """``(H, W)`` of the checkpoint's input images; None for feature vectors."""
    shape = tuple(estimator.input_shape_)
    return (shape[1], shape[2]) if len(shape) == 3 else None


def load_size(args: argparse.Namespace, estimator: IMCSwAVClustering | None) -> list[int] | tuple | None:
    """The size at which to read the images of ``--dataset folder``: ``--image_size``, else the input size
    of the checkpoint (``estimator``), if any, as ``predict`` does."""
    if args.image_size is not None or estimator is None or args.dataset != "folder":
        return args.image_size
    return _fitted_size(estimator)


def _size_conflict(args: argparse.Namespace, estimator: IMCSwAVClustering) -> list[str]:
    """``--image_size`` given and other than the checkpoint's input size, as a conflict (or none)."""
    size, fitted = args.image_size, _fitted_size(estimator)
    if size is None or fitted is None or (size[0], size[-1]) == fitted:  # S is S x S
        return []
    return [f"--image_size {' '.join(map(str, size))} (the checkpoint's: {fitted[0]} {fitted[1]})"]


def _conflicts_error(path: str, conflicts: list[str], advice: str) -> ValueError:
    return ValueError(f"{path} holds another network than the flags say: {'; '.join(conflicts)}. {advice}")


def refuse_other_size(args: argparse.Namespace, estimator: IMCSwAVClustering) -> None:
    """``test``: refuse an ``--image_size`` other than the input size of the checkpoint.

    Raises
    ------
    ValueError
        Naming both sizes.
    """
    conflicts = _size_conflict(args, estimator)
    if conflicts:
        raise _conflicts_error(
            args.cpt_load_path, conflicts, "Leave --image_size out: test reads at its size."
        )


def _backbone(value):
    """``"auto"`` is ResNet-18 on images (the only data of the command line)."""
    return "resnet18" if value == "auto" else value


def refuse_new_network(args: argparse.Namespace, estimator: IMCSwAVClustering) -> None:
    """A resumed ``train``: refuse the flags given that change the checkpoint's network (its architecture
    parameters or input size), all in one error.

    Raises
    ------
    ValueError
        Naming every such flag, with its value and the checkpoint's.
    """
    flagged = {**flag_params(args), "n_clusters": args.n_clusters}
    saved = estimator.get_params()
    given = given_params(args.given)
    conflicts = [
        f"{PARAM_FLAGS[name]} {_backbone(flagged[name])} (the checkpoint's: {_backbone(saved[name])})"
        for name in ARCHITECTURE_PARAMS
        if name in given and _backbone(flagged[name]) != _backbone(saved[name])
    ]
    conflicts += _size_conflict(args, estimator)
    if conflicts:
        raise _conflicts_error(
            args.cpt_load_path, conflicts, "Leave them out to resume with the checkpoint's settings."
        )


def check_data(
    args: argparse.Namespace, data: ImageSet, estimator: IMCSwAVClustering, resuming: bool
) -> None:
    """Refuse a data set whose images the checkpoint's network does not take (another size or number of
    channels) or, ``resuming``, that is normalised with other published constants than it was trained with.

    Raises
    ------
    ValueError
        Naming the data set flags and both shapes (or normalisations).
    """
    images = data.test_images
    shape = (images.shape[3], images.shape[1], images.shape[2])
    source = f"--dataset {args.dataset}" + (" --path " + str(args.path) if args.dataset != "digits" else "")
    if shape != tuple(estimator.input_shape_):
        raise ValueError(
            f"{source} gives images of shape (C, H, W) = {shape}, but {args.cpt_load_path} takes "
            f"{tuple(estimator.input_shape_)}."
        )
    saved = estimator.normalization
    if resuming and data.normalization is not None and not _same(data.normalization, saved):
        raise ValueError(
            f"{source} is normalised with its published (mean, std) {data.normalization}, but "
            f"{args.cpt_load_path} was trained with {saved}: resume it on the data set it was trained on."
        )


def _same(normalization, other) -> bool:
    return other is not None and np.allclose(np.asarray(normalization, float), np.asarray(other, float))


def resume(estimator: IMCSwAVClustering, args: argparse.Namespace, params: dict) -> IMCSwAVClustering:
    """Set the checkpoint's ``estimator`` to continue training (``warm_start``) into ``params``'s
    ``checkpoint_path``: its own parameters, but those of the flags given, which ``params`` (the parameters
    of the flags and the data set) holds.

    Returns
    -------
    IMCSwAVClustering
        ``estimator``.
    """
    overrides = {
        name: params[name]
        for name in given_params(args.given)
        if name in params and name not in ARCHITECTURE_PARAMS
    }
    return estimator.set_params(
        **overrides,
        checkpoint_path=params["checkpoint_path"],
        warm_start=True,
        verbose=params["verbose"],
    )
