"""The components of a fit, from the estimator's (checked) parameters and the fitted inputs: the crop sizes,
the view generator, the network's architecture, the training settings and the trainer."""

from __future__ import annotations

import torch

from imc_cluster.augmentation.cached import CachedViews
from imc_cluster.augmentation.crop_sizes import network_crop_sizes, resolve_crop_sizes
from imc_cluster.augmentation.multicrop import CropGroup, MultiCropAugmenter
from imc_cluster.augmentation.vectors import FeatureViews
from imc_cluster.data.encoder import InputEncoder
from imc_cluster.estimator.params import frozen_encoder, is_candidates
from imc_cluster.model.networks import STEM_POOL_MIN_SIDE, IMCSwAVNet, ResNetEncoder
from imc_cluster.training.distributed import World
from imc_cluster.training.trainer import Trainer, TrainingConfig

__all__ = [
    "crop_sizes",
    "augmenter",
    "architecture",
    "training_config",
    "training_dtype",
    "extraction_dtype",
    "make_trainer",
]


def crop_sizes(params: dict, inputs: InputEncoder) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (large, small) crop sizes of the parameters for the encoded images, checked against them (a
    pretrained network's defaults follow its input size)."""
    large, small = params["large_crop_size"], params["small_crop_size"]
    if inputs.preprocessing is not None:
        large, small = network_crop_sizes(
            large, small, inputs.preprocessing.size, inputs.preprocessing.fixed_size
        )
    return resolve_crop_sizes(large, small, *inputs.sample_shape[1:])


def augmenter(params: dict, inputs: InputEncoder, frozen: bool = False):
    """The generator of training views: multi-crop for images, feature corruption for vectors, and the
    cached views' features of a frozen encoder (``frozen``)."""
    if frozen:
        return CachedViews(params["n_large_crops"], params["n_small_crops"])
    if not inputs.is_image:
        return FeatureViews(params["n_large_crops"], params["n_small_crops"])
    large, small = crop_sizes(params, inputs)
    groups = [CropGroup(params["n_large_crops"], large, tuple(params["large_crop_scale"]))]
    if params["n_small_crops"]:
        groups.append(CropGroup(params["n_small_crops"], small, tuple(params["small_crop_scale"])))
    return MultiCropAugmenter(
        groups,
        inputs.pixel_mean,
        inputs.pixel_std,
        flip_prob=params["flip_prob"],
        color_jitter=tuple(params["color_jitter"]),
        color_jitter_prob=params["color_jitter_prob"],
        grayscale_prob=params["grayscale_prob"],
    )


def architecture(params: dict, inputs: InputEncoder, weights_identity: str | None = None) -> dict:
    """The network the parameters give for these inputs, as plain data (saved in checkpoints); a pretrained
    network's entry ``"pretrained"`` says whether it is frozen and which weights it started from, and
    ``"n_clusters"`` is a list of candidate Ks until a fit chooses one."""
    image = inputs.is_image
    pretrained = {"pretrained": {"frozen": frozen_encoder(params), "weights": weights_identity}}
    return {
        "backbone": ("resnet18" if params["backbone"] == "auto" else params["backbone"]) if image else "mlp",
        "in_size": int(inputs.sample_shape[0]),
        "width": 0 if inputs.preprocessing is not None else int(params["backbone_width"]),
        "stem_pool": bool(
            image and not inputs.preprocessing and min(inputs.sample_shape[1:]) >= STEM_POOL_MIN_SIDE
        ),
        "n_clusters": _n_clusters(params["n_clusters"]),
        **{
            name: int(params[name])
            for name in ("n_prototypes", "projection_dim", "head_hidden_dim", "n_heads")
        },
        **(pretrained if inputs.preprocessing is not None else {}),
    }


def _n_clusters(n_clusters) -> int | list[int]:
    """The architecture's ``n_clusters``: one int, or the list of candidate Ks (of a fit that chooses one)."""
    return [int(k) for k in n_clusters] if is_candidates(n_clusters) else int(n_clusters)


def training_config(params: dict) -> TrainingConfig:
    """The optimisation and objective settings of the parameters."""
    return TrainingConfig(
        batch_size=params["batch_size"],
        learning_rate=params["learning_rate"],
        betas=tuple(params["betas"]),
        weight_decay=params["weight_decay"],
        warmup_updates=params["warmup_updates"],
        lr_milestones=tuple(params["lr_milestones"]),
        lr_gamma=params["lr_gamma"],
        n_large_crops=params["n_large_crops"],
        temperature=params["temperature"],
        sinkhorn_epsilon=params["sinkhorn_epsilon"],
        sinkhorn_iterations=params["sinkhorn_iterations"],
        marginal_weight=params["marginal_weight"],
        logit_penalty=params["logit_penalty"],
        logit_threshold=params["logit_threshold"],
    )


def training_dtype(precision: str, device: torch.device, frozen: bool = False) -> torch.dtype | None:
    """The autocast dtype of training (None for float32), as ``precision`` asks: with a ``frozen``
    encoder, whose features train networks without convolutions, that of its features."""
    if precision == "float32":
        return None
    if frozen:
        return extraction_dtype(precision, device)
    return torch.bfloat16 if precision == "bfloat16" or device.type == "cuda" else None


def extraction_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a frozen encoder's features (None for float32): bf16 unless
    ``precision="float32"``, on CUDA and on CPUs with native bf16 arithmetic (AVX-512 BF16 or AMX)."""
    if precision == "float32":
        return None
    native = (
        device.type == "cuda" or torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    )
    return torch.bfloat16 if precision == "bfloat16" or native else None


def make_trainer(
    params: dict,
    inputs: InputEncoder,
    model: IMCSwAVNet,
    device: torch.device,
    training_state: dict,
    world: World | None,
    frozen: bool = False,
) -> Trainer:
    """A trainer for ``model`` on ``device``, in the state ``training_state`` records; with a ``frozen``
    encoder, of the rest of the network on the encoder's cached features."""
    cuda = device.type == "cuda"
    model.to(device)
    if frozen:
        model = model.on_features()
    elif cuda and inputs.is_image:
        model.to(memory_format=torch.channels_last)
    if isinstance(model.encoder, ResNetEncoder):
        model.encoder.checkpointing = params["activation_checkpointing"]
    trainer = Trainer(
        model,
        augmenter(params, inputs, frozen),
        training_config(params),
        torch.Generator(device),
        autocast_dtype=training_dtype(params["precision"], device, frozen),
        world=world,
        channels_last=cuda and inputs.is_image and not frozen,
        compile=params["compile"],
    )
    trainer.load_state(training_state)
    return trainer
