"""Where the encoded data live during a fit (the device, or pinned host memory) and how batches are gathered
from them onto the device."""

from __future__ import annotations

import torch

__all__ = ["DEVICE_DATA_SHARE", "place", "gather", "batches"]


#: share of the free GPU memory the training data may take; the rest is for the networks
DEVICE_DATA_SHARE = 0.5


def place(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Put the training data on ``device`` when they fit in its share of free memory; otherwise keep them
    in pinned host memory, from which batches are copied asynchronously."""
    if device.type != "cuda":
        return values.to(device)
    free, _ = torch.cuda.mem_get_info(device)
    if values.numel() * values.element_size() <= DEVICE_DATA_SHARE * free:
        return values.to(device)
    return values.pin_memory()


def gather(values: torch.Tensor, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``values[index]`` on ``device``. From host memory to a GPU, the rows are gathered into pinned memory
    (PyTorch's caching host allocator), so that the copy is asynchronous."""
    if values.device.type == "cpu" and device.type == "cuda":
        rows = torch.empty((index.numel(), *values.shape[1:]), dtype=values.dtype, pin_memory=True)
        return torch.index_select(values, 0, index, out=rows).to(device, non_blocking=True)
    return values[index].to(device, non_blocking=True)


def batches(n: int, batch_size: int):
    """Slices covering ``range(n)`` in order, ``batch_size`` at a time."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
