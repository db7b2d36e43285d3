"""Section a) of ``python -m benchmarks.speed``: multi-crop augmentation throughput.

The batched ``MultiCropAugmenter`` on uint8 tensors beside the same views made one image at a time by
torchvision transforms on PIL images, in a DataLoader with one worker per core; and the section's report.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks.speed.shared import (
    Data,
    Settings,
    build_trainer,
    channels_first,
    interleaved_times,
    medians,
    verdict,
)
from imc_cluster.augmentation.multicrop import CropGroup, MultiCropAugmenter

#: CPU target: augmentation speed-up over the per-image pipeline
AUGMENT_SPEEDUP_TARGET = 5.0
#: images the augmentation benchmark draws its batches from
AUGMENT_POOL = 8192


class PerImageViews(Dataset):
    """PIL images, each turned into its six views by torchvision transforms, one image at a time.

    Parameters
    ----------
    images : ndarray
        uint8 ``(N, H, W, 3)`` images.
    augmenter : MultiCropAugmenter
        The batched augmenter whose views (groups, probabilities, strengths, normalisation) to make.
    """

    def __init__(self, images: np.ndarray, augmenter: MultiCropAugmenter) -> None:
        self.images = [Image.fromarray(image) for image in images]
        self.views = [
            per_image_transform(group, augmenter) for group in augmenter.groups for _ in range(group.n_crops)
        ]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image = self.images[index]
        return tuple(view(image) for view in self.views)


def per_image_transform(group: CropGroup, augmenter: MultiCropAugmenter) -> transforms.Compose:
    """torchvision's per-image equivalent of one view of ``group`` made by ``augmenter``."""
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(group.size, scale=group.scale, ratio=augmenter.ratio),
            transforms.RandomHorizontalFlip(augmenter.flip_prob),
            transforms.RandomApply(
                [transforms.ColorJitter(*augmenter.color_jitter)], p=augmenter.color_jitter_prob
            ),
            transforms.RandomGrayscale(augmenter.grayscale_prob),
            transforms.ToTensor(),
            transforms.Normalize(augmenter.mean, augmenter.std),
        ]
    )


def augmentation_benchmark(data: Data, settings: Settings) -> dict:
    """Images per second of our augmenter and of the per-image torchvision DataLoader (section a)."""
    device, batch = torch.device(settings.device), settings.batch_size
    augmenter = build_trainer(data, settings, settings.n_prototypes).augment
    pool = channels_first(data.train[:AUGMENT_POOL]).to(device)
    generator = torch.Generator(device).manual_seed(0)

    def ours() -> None:
        for _ in range(settings.augment_batches):
            index = torch.randint(pool.shape[0], (batch,), generator=generator, device=device)
            augmenter(pool[index], generator)

    workers = os.cpu_count() or 1
    loader = DataLoader(
        PerImageViews(data.train[: settings.torchvision_images], augmenter),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=True,
        drop_last=True,
    )
    samples = interleaved_times(
        {"ours": ours, "torchvision": lambda: sum(1 for _ in loader)},
        device,
        settings.warmup,
        settings.repeats,
    )
    seconds = medians(samples)
    rates = {
        "ours": batch * settings.augment_batches / seconds["ours"],
        "torchvision": batch * len(loader) / seconds["torchvision"],
    }
    return {
        "images_per_second": rates,
        "speedup": rates["ours"] / rates["torchvision"],
        "workers": workers,
        "seconds": samples,
        "images_per_repetition": {
            "ours": batch * settings.augment_batches,
            "torchvision": batch * len(loader),
        },
    }


def augmentation_section(a: dict, batch: int, device: str) -> list[str]:
    """Section a): both pipelines' throughput and their ratio."""
    rates = a["images_per_second"]
    return [
        "## a) Multi-crop augmentation (each image to 2 large + 4 small views)",
        "",
        "| pipeline | images/s |",
        "|---|---:|",
        f"| `MultiCropAugmenter`, batches of {batch} uint8 tensors on {device}, main process "
        f"| {rates['ours']:,.0f} |",
        f"| torchvision per image (PIL), DataLoader with {a['workers']} workers, batch {batch} "
        f"| {rates['torchvision']:,.0f} |",
        "",
        f"Ratio {a['speedup']:.1f}x (CPU target >= {AUGMENT_SPEEDUP_TARGET:.0f}x: "
        f"{verdict(a['speedup'] >= AUGMENT_SPEEDUP_TARGET, device)}).",
        "",
    ]
