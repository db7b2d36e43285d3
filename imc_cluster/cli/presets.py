"""Presets of ``imc-cluster train``: defaults of its flags for a kind of run (``--preset NAME``); a data
set's own preset (of the same name) is its default. Flags given win, and a resumed run keeps its checkpoint's
settings instead. Every value is that of a flag, by the flag's destination."""

from __future__ import annotations

import argparse
from typing import NamedTuple

__all__ = ["Preset", "PRESETS", "presets_help", "apply_preset"]


class Preset(NamedTuple):
    """Defaults of ``train`` flags for a kind of run: what it is for, and the flags' values (by
    destination). Flags given win; a resumed run keeps its checkpoint's settings instead."""

    summary: str
    flags: dict


#: presets of ``train`` (``--preset NAME``); a data set's own preset (same name) is its default
PRESETS: dict[str, Preset] = {
    # 8x8 digits: a narrow ResNet-18, gentle crops, no mirroring (it changes digits), a CPU-sized schedule;
    # ACC 0.948 (0.023) over 5 seeds, 0.903 to 0.967, in 5 to 6 minutes each on 2 idle cores
    # (benchmarks/results/digits_heads.md)
    "digits": Preset(
        "scikit-learn's 8x8 digits on a CPU, ACC about 0.95 in 6 minutes (the default of --dataset digits)",
        dict(
            epochs=150,
            prototypes=100,
            backbone_width=16,
            batch_size=128,
            learning_rate=1e-3,
            warmup=50,
            milestones=[100, 130],
            min_scale_crops=[0.5, 0.3],
            max_scale_crops=[1.0, 0.6],
            flip_prob=0.0,
            color_jitter=[0.2, 0.2, 0.0, 0.0],
            color_jitter_prob=0.5,
        ),
    ),
    # a laptop: small inputs and network, 2 + 2 views, float32 (oneDNN's bf16 is not on every CPU)
    "cpu": Preset(
        "a laptop CPU: folders at 32x32 pixels, a narrow ResNet-18, few crops, small batches, no bf16",
        dict(
            image_size=[32],
            model_type="resnet18",
            backbone_width=32,
            nmb_crops=[2, 2],
            batch_size=64,
            precision="float32",
        ),
    ),
}


def presets_help() -> str:
    """The presets, one line each, for ``train --help``."""
    width = max(map(len, PRESETS))
    lines = [f"  {name:<{width}}  {preset.summary}" for name, preset in PRESETS.items()]
    return "\n".join(["presets (--preset NAME):", *lines])


def apply_preset(args: argparse.Namespace) -> None:
    """Fill the ``train`` flags that were not given from ``--preset``, else the data set's own preset; its
    ``--image_size`` only for a folder (the named data sets have their size)."""
    preset = PRESETS.get(args.preset or args.dataset)
    for dest, value in preset.flags.items() if preset else ():
        if dest not in args.given and (dest != "image_size" or args.dataset == "folder"):
            setattr(args, dest, list(value) if isinstance(value, list) else value)
