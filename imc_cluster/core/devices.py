"""The device a model runs on, from the names users give ("auto", "cpu", "cuda", "cuda:N")."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """The device to run on, with its index on CUDA ("cuda" is the current CUDA device)."""
    if not isinstance(name, str):
        raise TypeError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}.")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}.") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} was requested but CUDA is not available on this machine.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r} does not exist: {torch.cuda.device_count()} GPU(s) visible.")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device
