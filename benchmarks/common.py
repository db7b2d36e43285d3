"""What several benchmarks share: the trainer a fit builds, the machine's description and load, and counting
ATen operations."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch
import torchvision
from torch.utils._python_dispatch import TorchDispatchMode

from imc_cluster import IMCSwAVClustering
from imc_cluster.core.devices import resolve_device
from imc_cluster.data.encoder import InputEncoder
from imc_cluster.data.placement import place
from imc_cluster.estimator.components import make_trainer
from imc_cluster.estimator.fitted import Fitted, fit_seed, initial_state
from imc_cluster.estimator.params import checked_params
from imc_cluster.training.distributed import World, device_for
from imc_cluster.training.trainer import Trainer


def fit_trainer(
    estimator: IMCSwAVClustering, X, world: World | None = None
) -> tuple[dict, Fitted, Trainer, torch.Tensor]:
    """What ``estimator.fit(X)`` builds before its first step, in ``world`` (None: one process): the
    parameters, the fitted state (inputs, device, fresh network, training state), the trainer (network,
    views, normalisation, precision and memory format) and the encoded data on the training device."""
    params = checked_params(estimator)
    inputs = InputEncoder(params["image_shape"], params["backbone"], params["normalization"])
    data = inputs.fit_encode(X, estimator)
    device = resolve_device(device_for(world, params["device"]))
    fitted = initial_state(params, inputs, data, device, fit_seed(params, world))
    trainer = make_trainer(params, inputs, fitted.model, device, fitted.training_state, world)
    return params, fitted, trainer, place(data.values, device)


def cpu_seconds() -> tuple[float, float]:
    """Busy CPU seconds of the whole machine, hypervisor steal included (``/proc/stat``), and CPU seconds
    of this process and its finished children."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _, _, irq, softirq, steal = ticks
    own = os.times()
    return (
        (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"),
        own.user + own.system + own.children_user + own.children_system,
    )


def cpu_caches() -> str:
    """The first CPU's data caches from sysfs, such as "L1 48K, L2 1024K, L3 32768K (shared by 2 CPUs)"."""
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        if (index / "type").read_text().strip() == "Instruction":
            continue
        shared = (index / "shared_cpu_map").read_text().strip().replace(",", "")
        sharing = bin(int(shared, 16)).count("1")
        caches.append(
            f"L{(index / 'level').read_text().strip()} {(index / 'size').read_text().strip()}"
            + (f" (shared by {sharing} CPUs)" if sharing > 1 else "")
        )
    return ", ".join(caches) or "unknown"


def machine() -> dict:
    """CPU model, cores, caches, library versions, device and load of this machine."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "caches": cpu_caches(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


class OperationCounter(TorchDispatchMode):
    """Counts the ATen operations that run inside it (``counts["all"]``), and apart those that are not views
    (``counts["not views"]``): on a GPU each of these is a kernel launch or an allocation, which costs the
    host some microseconds whatever its size."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = {"all": 0, "not views": 0}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        view = any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)
        self.counts["all"] += 1
        self.counts["not views"] += not view
        return func(*args, **(kwargs or {}))
