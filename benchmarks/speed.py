"""Speed and memory of imc_cluster on one machine, in one configuration, in one run.

The configuration is the CIFAR one: ResNet-18 of width 64, 1000 prototypes, a cluster head of width 1024,
10 clusters, 2 crops of 28x28 and 4 of 18x18 per 32x32 RGB image, batch 64. The run prints a markdown
report of

a) multi-crop augmentation throughput: the batched ``MultiCropAugmenter`` on uint8 tensors beside the
   same views made one image at a time by torchvision transforms on PIL images, in a DataLoader with one
   worker per core;
b) training-step throughput (``Trainer.step``) and the share of the step spent outside the networks'
   forward and backward passes, with a breakdown of the step;
c) ``IMCSwAVClustering.predict`` throughput, and the peak memory of ``fit`` on the 50,000 training images,
   measured in fresh subprocesses, with the defaults and with the memory-saving options (bf16, activation
   checkpointing), and what later epochs add with and without a checkpoint file;
d) how fit and predict time grow with the number of images, and step and objective time with the number
   of prototypes (with the cost per element of an elementwise pass, which shows the caches' part).

    python benchmarks/speed.py                                      # about 8 minutes on a 2-core CPU
    python benchmarks/speed.py --quick                              # smoke run, under 2 minutes
    python benchmarks/speed.py --output benchmarks/results/speed_cpu  # also writes .md and .json

Times are ``time.perf_counter`` wall-clock medians over repetitions that follow warm-up ones (on a GPU,
after synchronising). Tasks that are compared with each other take turns within every repetition, so that
changes in the load of a shared machine affect them alike. The CPU time that other processes (and the
hypervisor) took during every section is reported, since they distort every figure: the many short
multi-threaded operations slow down far more than in proportion when a core is taken away. Memory figures
come from ``/proc/self/status`` (Linux).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from imc_cluster import IMCSwAVClustering
from imc_cluster.augmentation import CropGroup, MultiCropAugmenter
from imc_cluster.data import as_tensor
from imc_cluster.datasets import load_dataset
from imc_cluster.training import Trainer

N_CLUSTERS = 10
#: shape (N, H, W, C) of the random train and test images used when no data set is found
FALLBACK_SHAPES = ((50_000, 32, 32, 3), (10_000, 32, 32, 3))
#: CPU targets: augmentation speed-up over the per-image pipeline, share of the step outside fwd+bwd, and
#: memory beyond the uint8 training images
AUGMENT_SPEEDUP_TARGET = 5.0
OUTSIDE_SHARE_TARGET = 0.10
#: the largest slowdown of the CPU step that per-view BatchNorm may cost
PER_VIEW_SLOWDOWN_TARGET = 0.05
MEMORY_ALLOWANCE = 1.5e9
#: share of the CPUs taken by other processes in a section above which the report warns
CONTENTION_LIMIT = 0.05
#: the memory-saving settings whose fit peak and step time section c) compares with the defaults
MEMORY_OPTIONS = ({"activation_checkpointing": True}, {"precision": "bfloat16"},
                  {"precision": "bfloat16", "activation_checkpointing": True})
#: the leanest of them, and the images and epochs of the fits that show what later epochs add
LEANEST = MEMORY_OPTIONS[-1]
LATER_EPOCHS_IMAGES, LATER_EPOCHS = 512, 3
#: images the augmentation benchmark draws its batches from
AUGMENT_POOL = 8192

#: run sizes of the default run and of ``--quick``
FULL_RUN = {"warmup": 2, "repeats": 7, "sweep_repeats": 3, "objective_repeats": 25, "augment_batches": 20,
            "torchvision_images": 2560,
            "predict_fit_batches": 4, "predict_images": 1024, "predict_repeats": 3, "memory_steps": 5,
            "sizes": (1000, 5000, 20000, 50000), "prototypes": (100, 1000, 3000, 10000)}
QUICK_RUN = {"warmup": 1, "repeats": 3, "sweep_repeats": 1, "objective_repeats": 3, "augment_batches": 4,
             "torchvision_images": 640,
             "predict_fit_batches": 2, "predict_images": 256, "predict_repeats": 1, "memory_steps": 2,
             "sizes": (1000, 2000), "prototypes": (100, 1000)}


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on.

    Parameters
    ----------
    data : str
        ImageFolder tree with ``train/`` and ``test/`` (CIFAR-10); random images when it is missing.
    device : str
        "cpu" or "cuda".
    batch_size : int
        Images per training step, augmentation batch and predict chunk.
    width, tiny_width : int
        Backbone width of the benchmark configuration, and of the fits of the size sweep.
    n_prototypes, head_hidden_dim : int
        Prototypes and cluster-head width of the benchmark configuration.
    warmup, repeats : int
        Untimed and timed repetitions of sections a) and b).
    sweep_repeats : int
        Timed steps (after one warm-up) of every point of the prototype sweep.
    objective_repeats : int
        Timed runs (after three warm-up ones) of the objectives, and of the elementwise pass, of every point
        of the prototype sweep: they take milliseconds, so many runs cost little and steady the medians.
    augment_batches : int
        Batches augmented in one timed repetition of our augmenter.
    torchvision_images : int
        Images in one timed epoch of the per-image DataLoader.
    predict_fit_batches : int
        Steps of the short fit before the predict benchmark.
    predict_images, predict_repeats : int
        Test images per predict call, and timed calls.
    memory_steps : int
        Training steps of the memory subprocess before it stops ``fit``.
    sizes, prototypes : tuple of int
        Numbers of images of the fit/predict sweep, and prototype counts of the step sweep.
    """

    data: str
    device: str
    batch_size: int
    width: int
    tiny_width: int
    n_prototypes: int
    head_hidden_dim: int
    warmup: int
    repeats: int
    sweep_repeats: int
    objective_repeats: int
    augment_batches: int
    torchvision_images: int
    predict_fit_batches: int
    predict_images: int
    predict_repeats: int
    memory_steps: int
    sizes: tuple[int, ...]
    prototypes: tuple[int, ...]


@dataclass
class Data:
    """uint8 ``(N, H, W, C)`` train and test images, and where they came from."""

    train: np.ndarray
    test: np.ndarray
    source: str


@dataclass(frozen=True)
class FitJob:
    """One ``fit`` (and optionally ``predict``) in a fresh subprocess, for time and peak memory.

    Parameters
    ----------
    data : str
        Path handed to :func:`load_data`.
    n_images : int
        Leading training images to fit on.
    width, batch_size : int
        ``backbone_width`` and ``batch_size`` of the estimator (other parameters are the defaults).
    device : str
        The estimator's device.
    max_steps : int or None
        Stop ``fit`` after this many training steps; None runs one whole epoch.
    predict_repeats : int
        How many times to time ``predict`` on the same images after the fit (the median is kept); 0 for
        none.
    params : dict
        Further estimator parameters (such as ``precision`` or ``activation_checkpointing``).
    """

    data: str
    n_images: int
    width: int
    batch_size: int
    device: str
    max_steps: int | None
    predict_repeats: int
    params: dict = field(default_factory=dict)


class StopFit(Exception):
    """Raised by the step counter of :func:`stop_fit_after` to end ``fit`` early."""


# ---------------------------------------------------------------- data and timing helpers


def load_data(path: str) -> Data:
    """The CIFAR-10 ImageFolder tree at ``path`` or, when there is none, random images of its shape."""
    if Path(path).is_dir():
        images = load_dataset("folder", path)
        return Data(images.train_images, images.test_images, f"CIFAR-10 JPEG ImageFolder at {path}")
    rng = np.random.default_rng(0)
    train, test = (rng.integers(0, 256, shape, dtype=np.uint8) for shape in FALLBACK_SHAPES)
    return Data(train, test, f"random uint8 images (no data set at {path})")


def channels_first(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` array as an ``(N, C, H, W)`` tensor over the same memory (a channels-last
    view), as ``IMCSwAVClustering`` prepares images."""
    return as_tensor(images).permute(0, 3, 1, 2)


def benchmark_estimator(settings: Settings, **params) -> IMCSwAVClustering:
    """An estimator of the benchmark configuration on the settings' device (``params`` override it)."""
    configuration = {"backbone_width": settings.width, "n_prototypes": settings.n_prototypes,
                     "head_hidden_dim": settings.head_hidden_dim, "batch_size": settings.batch_size,
                     "device": settings.device, "random_state": 0}
    return IMCSwAVClustering(N_CLUSTERS, **{**configuration, **params})


def build_trainer(data: Data, settings: Settings, n_prototypes: int) -> Trainer:
    """The trainer that ``IMCSwAVClustering.fit`` builds for the benchmark configuration, with
    ``n_prototypes`` prototypes: its network, views, normalisation, precision and memory format."""
    estimator = benchmark_estimator(settings, n_prototypes=n_prototypes)
    estimator._check_params()
    prepared = estimator._prepare(data.train, reset=True)
    estimator.device_ = estimator._resolve_device()
    estimator._initialize(prepared)
    return estimator._trainer(prepared)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(tasks: dict[str, Callable[[], object]], device: torch.device, warmup: int,
                      repeats: int) -> dict[str, list[float]]:
    """Seconds of every timed run of every task; in each repetition the tasks run one after another.

    Parameters
    ----------
    tasks : dict of str to callable
        The tasks, by name.
    device : torch.device
        Device to synchronise with around every run.
    warmup, repeats : int
        Untimed repetitions, then timed ones.

    Returns
    -------
    dict of str to list of float
        ``repeats`` durations per task.
    """
    samples: dict[str, list[float]] = {name: [] for name in tasks}
    for repetition in range(warmup + repeats):
        for name, task in tasks.items():
            synchronize(device)
            start = time.perf_counter()
            task()
            synchronize(device)
            if repetition >= warmup:
                samples[name].append(time.perf_counter() - start)
    return samples


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    """Median of every list of durations."""
    return {name: statistics.median(values) for name, values in samples.items()}


def proc_status(field: str) -> int:
    """A memory field of ``/proc/self/status`` (such as "VmRSS" or "VmHWM"), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


#: mapped files whose resident pages are GPU software: the CUDA libraries of a CUDA build of torch, Triton
GPU_LIBRARY = re.compile(r"/nvidia/|/triton/|/cuda/bindings/|libtorch_cuda|libc10_cuda|libcuda|libnccl")


def resident_gpu_libraries() -> int:
    """Resident bytes of the CUDA and Triton libraries mapped into this process (``/proc/self/smaps``)."""
    total, gpu = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping's header: address range, ..., path
                gpu = len(fields) > 5 and GPU_LIBRARY.search(fields[5]) is not None
            elif fields[0] == "Rss:" and gpu:
                total += int(fields[1]) * 1024
    return total


def peak_rss() -> int:
    """The resident-set high-water mark of this process's memory (VmHWM), in bytes.

    Not ``ru_maxrss``: the kernel carries the peak of the process image that ``exec`` replaced into it, so
    in a subprocess of a large benchmark process it reports the parent's size.
    """
    return proc_status("VmHWM")


def cpu_seconds() -> tuple[float, float]:
    """Busy CPU seconds of the whole machine, hypervisor steal included (``/proc/stat``), and CPU seconds
    of this process and its finished children."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _, _, irq, softirq, steal = ticks
    own = os.times()
    return ((user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"),
            own.user + own.system + own.children_user + own.children_system)


def reset_peak_rss() -> None:
    """Reset the resident-set high-water mark (VmHWM) to the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


# ---------------------------------------------------------------- a) augmentation


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
        self.views = [per_image_transform(group, augmenter) for group in augmenter.groups
                      for _ in range(group.n_crops)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image = self.images[index]
        return tuple(view(image) for view in self.views)


def per_image_transform(group: CropGroup, augmenter: MultiCropAugmenter) -> transforms.Compose:
    """torchvision's per-image equivalent of one view of ``group`` made by ``augmenter``."""
    return transforms.Compose([
        transforms.RandomResizedCrop(group.size, scale=group.scale, ratio=augmenter.ratio),
        transforms.RandomHorizontalFlip(augmenter.flip_prob),
        transforms.RandomApply([transforms.ColorJitter(*augmenter.jitter)], p=augmenter.jitter_prob),
        transforms.RandomGrayscale(augmenter.grayscale_prob),
        transforms.ToTensor(),
        transforms.Normalize(augmenter.mean, augmenter.std),
    ])


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
    loader = DataLoader(PerImageViews(data.train[:settings.torchvision_images], augmenter),
                        batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=True,
                        drop_last=True)
    samples = interleaved_times({"ours": ours, "torchvision": lambda: sum(1 for _ in loader)}, device,
                                settings.warmup, settings.repeats)
    seconds = medians(samples)
    rates = {"ours": batch * settings.augment_batches / seconds["ours"],
             "torchvision": batch * len(loader) / seconds["torchvision"]}
    return {"images_per_second": rates, "speedup": rates["ours"] / rates["torchvision"], "workers": workers,
            "seconds": samples, "images_per_repetition": {"ours": batch * settings.augment_batches,
                                                          "torchvision": batch * len(loader)}}


# ---------------------------------------------------------------- b) training step


def forward_backward(trainer: Trainer, views: list[torch.Tensor], batch_size: int) -> None:
    """The networks' forward and backward passes alone, with the sum of every output as the loss."""
    trainer.model.zero_grad(set_to_none=True)
    with trainer.autocast():
        _, scores, logits = trainer.model(views, batch_size)
    (scores.float().sum() + logits.float().sum()).backward()


def leaf_outputs(trainer: Trainer, views: list[torch.Tensor], batch_size: int) -> list[torch.Tensor]:
    """The networks' scores and logits ``(V, B, n)`` of ``views``, as float32 leaves that require a gradient."""
    with torch.no_grad(), trainer.autocast():
        _, scores, logits = trainer.model(views, batch_size)
    return [output.float().requires_grad_() for output in (scores, logits)]


def objective_backward(trainer: Trainer, scores: torch.Tensor, logits: torch.Tensor) -> None:
    """The objectives' forward and backward (Sinkhorn, SwAV, mutual information, penalty) alone."""
    scores.grad = logits.grad = None
    trainer.objectives(scores, logits)["loss"].backward()


def joint_norm_step(trainer: Trainer, batch: torch.Tensor) -> None:
    """A step of the former network pass, whose BatchNorms normalised the views of a crop size together
    (and all views together in the head), for the before/after comparison of per-view normalisation."""
    trainer.model.per_view_norm = False
    try:
        trainer.step(batch)
    finally:
        trainer.model.per_view_norm = True


def step_tasks(trainer: Trainer, batch: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The full step and its parts, as tasks for :func:`interleaved_times`."""
    views = trainer.views(batch)
    scores, logits = leaf_outputs(trainer, views, batch.shape[0])
    return {
        "step": lambda: trainer.step(batch),
        "step_joint_norm": lambda: joint_norm_step(trainer, batch),
        "augment": lambda: trainer.views(batch),
        "forward_backward": lambda: forward_backward(trainer, views, batch.shape[0]),
        "objectives": lambda: objective_backward(trainer, scores, logits),
        "optimizer": trainer.optimizer.step,
    }


def training_batch(data: Data, settings: Settings) -> torch.Tensor:
    """One batch of uint8 training images on the settings' device."""
    return channels_first(data.train[:settings.batch_size]).to(settings.device)


class OperationCounter(TorchDispatchMode):
    """Counts the ATen operations that run inside it: on a GPU, each is at least one kernel launch, which
    costs the host some microseconds whatever the kernel's size."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def operations(task: Callable[[], object]) -> int:
    """ATen operations of one run of ``task``."""
    with OperationCounter() as counter:
        task()
    return counter.count


def step_benchmark(data: Data, settings: Settings) -> dict:
    """Step throughput and its breakdown (section b)."""
    trainer = build_trainer(data, settings, settings.n_prototypes)
    tasks = step_tasks(trainer, training_batch(data, settings))
    counts = {name: operations(task) for name, task in tasks.items()}
    samples = interleaved_times(tasks, torch.device(settings.device), settings.warmup, settings.repeats)
    seconds = medians(samples)
    outside = seconds["augment"] + seconds["objectives"] + seconds["optimizer"]
    return {"images_per_second": settings.batch_size / seconds["step"], "median_seconds": seconds,
            "rest_seconds": seconds["step"] - seconds["forward_backward"] - outside,
            "outside_share": 1.0 - seconds["forward_backward"] / seconds["step"],
            "outside_share_of_parts": outside / seconds["step"], "operations": counts, "seconds": samples}


# ---------------------------------------------------------------- c) predict and memory


def predict_benchmark(data: Data, settings: Settings) -> dict:
    """Predict throughput of a briefly fitted estimator of the benchmark configuration (section c)."""
    fit_images = data.train[:settings.predict_fit_batches * settings.batch_size]
    estimator = benchmark_estimator(settings, max_epochs=1)
    start = time.perf_counter()
    estimator.fit(fit_images)
    fit_seconds = time.perf_counter() - start
    images = data.test[:settings.predict_images]
    tensors = channels_first(images)
    estimator.predict(images[:settings.batch_size])  # warm-up
    # "network": predict without its input handling, on the images as predict prepares them
    samples = interleaved_times({"predict": lambda: estimator.predict(images),
                                 "network": lambda: estimator._forward(tensors, estimator.model_.cluster_logits)},
                                torch.device(settings.device), 0, settings.predict_repeats)
    rates = {name: len(images) / seconds for name, seconds in medians(samples).items()}
    return {"images_per_second": rates, "fit_images": len(fit_images), "fit_seconds": fit_seconds,
            "predict_images": len(images), "seconds": samples}


def stop_fit_after(steps: int) -> list[float]:
    """Make every ``Trainer.step`` count, and the ``steps``-th one raise :class:`StopFit` after its update;
    returns the list that receives every step's seconds (device-synchronised)."""
    original = Trainer.step
    durations: list[float] = []

    def counted_step(self: Trainer, batch: torch.Tensor, *args, **kwargs):
        synchronize(batch.device)
        start = time.perf_counter()
        result = original(self, batch, *args, **kwargs)
        synchronize(batch.device)
        durations.append(time.perf_counter() - start)
        if len(durations) >= steps:
            raise StopFit
        return result

    Trainer.step = counted_step
    return durations


def run_fit_job(job: FitJob) -> dict:
    """Fit (and predict) as ``job`` says, in this process; return times and memory peaks."""
    record = {"rss_after_imports": proc_status("VmRSS"), "rss_gpu_libraries": resident_gpu_libraries()}
    data = load_data(job.data)
    images = data.train[:job.n_images].copy()
    record.update(data_bytes=images.nbytes, peak_rss_loading=peak_rss())
    del data
    record["rss_before_fit"] = proc_status("VmRSS")
    durations = stop_fit_after(job.max_steps) if job.max_steps is not None else []
    params = {"max_epochs": 1, **job.params}
    estimator = IMCSwAVClustering(N_CLUSTERS, backbone_width=job.width, batch_size=job.batch_size,
                                  device=job.device, random_state=0, **params)
    if job.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()
    start = time.perf_counter()
    try:
        estimator.fit(images)
    except StopFit:
        record["stopped_after_steps"] = job.max_steps
        record["step_seconds"] = statistics.median(durations[1:] or durations)  # the first one warms up
    record.update(fit_seconds=time.perf_counter() - start, peak_rss_fit=peak_rss())
    if job.device.startswith("cuda"):
        record["cuda_max_allocated"] = torch.cuda.max_memory_allocated()
    if hasattr(estimator, "history_"):
        record["epoch_seconds"] = estimator.history_[0]["seconds"]
    if job.predict_repeats:
        times = interleaved_times({"predict": lambda: estimator.predict(images)}, torch.device(job.device), 0,
                                  job.predict_repeats)
        record["predict_seconds"] = medians(times)["predict"]
    return record


def fit_in_subprocess(job: FitJob) -> dict:
    """:func:`run_fit_job` in a fresh Python process, so that its memory peaks are its own."""
    command = [sys.executable, str(Path(__file__).resolve()), "--fit-job", json.dumps(asdict(job))]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"The fit subprocess failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {**asdict(job), **json.loads(done.stdout.strip().splitlines()[-1])}


def saved_activation_bytes(trainer: Trainer, batch: torch.Tensor) -> int:
    """Bytes of the tensors that the networks' forward pass on one batch of views keeps for the backward
    pass, parameters excluded."""
    views = trainer.views(batch)
    parameters = {parameter.untyped_storage().data_ptr() for parameter in trainer.model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with trainer.autocast():
            trainer.model(views, batch.shape[0])
    return sum(storages.values())


def memory_benchmark(data: Data, settings: Settings) -> dict:
    """Peak memory of fit on all training images with the benchmark network, stopped early, and what the
    network needs for one step: activations kept for backward, and parameters (section c)."""
    job = FitJob(settings.data, len(data.train), settings.width, settings.batch_size, settings.device,
                 settings.memory_steps, predict_repeats=0)
    trainer = build_trainer(data, settings, settings.n_prototypes)
    parameter_bytes = sum(p.numel() * p.element_size() for p in trainer.model.parameters())
    options = [fit_in_subprocess(FitJob(**{**asdict(job), "params": params})) for params in MEMORY_OPTIONS]
    return {**fit_in_subprocess(job), "parameter_bytes": parameter_bytes, "options": options,
            "later_epochs": later_epochs_memory(settings),
            "saved_activation_bytes": saved_activation_bytes(trainer, training_batch(data, settings))}


def later_epochs_memory(settings: Settings) -> list[dict]:
    """What fit adds in one epoch and in several, without and with a checkpoint file (from the second
    epoch on, divergence rollback keeps a copy of the model and optimiser unless a checkpoint holds it)."""
    checkpoint = str(Path(tempfile.mkdtemp(prefix="imc-speed-")) / "model.cpt")
    runs = ({"max_epochs": 1}, {"max_epochs": LATER_EPOCHS},
            {"max_epochs": LATER_EPOCHS, "checkpoint_path": checkpoint})
    return [fit_in_subprocess(FitJob(settings.data, LATER_EPOCHS_IMAGES, settings.width, settings.batch_size,
                                     settings.device, None, 0, {**LEANEST, **run})) for run in runs]


# ---------------------------------------------------------------- d) scaling


def size_sweep(data: Data, settings: Settings) -> list[dict]:
    """One-epoch fit and predict of a tiny network on growing numbers of images, each in a subprocess."""
    sizes = [size for size in settings.sizes if size <= len(data.train)]
    return [fit_in_subprocess(FitJob(settings.data, size, settings.tiny_width, settings.batch_size,
                                     settings.device, None, settings.predict_repeats)) for size in sizes]


def prototype_sweep(data: Data, settings: Settings) -> list[dict]:
    """Step and objective times of the benchmark network for every number of prototypes, with the time of
    one elementwise pass (a division) over float32 scores of the views' shape: its cost per element shows
    how much of any super-linear growth of the objectives is the memory hierarchy rather than arithmetic."""
    device, batch = torch.device(settings.device), training_batch(data, settings)
    records = []
    for n_prototypes in settings.prototypes:
        trainer = build_trainer(data, settings, n_prototypes)
        tasks = step_tasks(trainer, batch)
        n_views = sum(group.n_crops for group in trainer.augment.groups)
        scores = torch.randn(n_views * settings.batch_size, n_prototypes, device=device)
        samples = interleaved_times({"step": tasks["step"]}, device, 1, settings.sweep_repeats)
        samples |= interleaved_times({"objectives": tasks["objectives"],
                                      "elementwise": functools.partial(torch.div, scores, 0.1)},
                                     device, 3, settings.objective_repeats)
        records.append({"n_prototypes": n_prototypes, "score_elements": scores.numel(),
                        "median_seconds": medians(samples), "seconds": samples})
    return records


def marginal_costs(xs: Sequence[float], ys: Sequence[float]) -> list[float]:
    """Slopes between successive points: constant for linear growth, rising for super-linear growth."""
    return [(y1 - y0) / (x1 - x0) for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:])]


# ---------------------------------------------------------------- the report


def cpu_caches() -> str:
    """The first CPU's data caches from sysfs, such as "L1 48K, L2 1024K, L3 32768K (shared by 2 CPUs)"."""
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        if (index / "type").read_text().strip() == "Instruction":
            continue
        shared = (index / "shared_cpu_map").read_text().strip().replace(",", "")
        sharing = bin(int(shared, 16)).count("1")
        caches.append(f"L{(index / 'level').read_text().strip()} {(index / 'size').read_text().strip()}"
                      + (f" (shared by {sharing} CPUs)" if sharing > 1 else ""))
    return ", ".join(caches) or "unknown"


def machine() -> dict:
    """CPU model, cores, caches, library versions, device and load of this machine."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    return {"cpu": cpu, "cores": os.cpu_count(), "caches": cpu_caches(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def verdict(met: bool, device: str) -> str:
    """How a figure compares with its target; the targets are the CPU's, so a GPU run is not judged."""
    if device != "cpu":
        return f"not judged on {device}"
    return "met" if met else "NOT met"


def mb(n_bytes: float) -> str:
    """Bytes in (decimal) megabytes."""
    return f"{n_bytes / 1e6:,.0f} MB"


def header(results: dict) -> list[str]:
    """Machine, data, configuration, timing method and load of the run."""
    m, s = results["machine"], results["settings"]
    gpu = f", GPU {m['gpu']}" if s["device"].startswith("cuda") else ""
    return [
        "# imc_cluster speed and memory",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads){gpu}; device "
        f"`{s['device']}`; torch {m['torch']}, torchvision {m['torchvision']}, Python {m['python']}; "
        f"{m['date']}.",
        f"- Data: {results['data_source']}.",
        f"- Configuration: ResNet-18 of width {s['width']}, {s['n_prototypes']} prototypes, cluster head "
        f"{s['head_hidden_dim']}, {N_CLUSTERS} clusters; 2 x 28x28 + 4 x 18x18 crops of 32x32 RGB images; "
        f"batch {s['batch_size']}.",
        f"- Timing: wall-clock medians; a) and b) of {s['repeats']} repetitions after {s['warmup']} warm-up "
        f"ones, predict of {s['predict_repeats']}, the prototype sweep as its section says; "
        "compared tasks take turns within every repetition.",
        contention_line(results["others_cpu_share"]),
        "",
    ]


def contention_line(shares: dict[str, float]) -> str:
    """The share of the CPUs other processes took in every section, with a warning when it is not small."""
    figures = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
    busy = max(shares.values()) > CONTENTION_LIMIT
    warning = " **Other processes competed for the cores: the figures are unreliable.**" if busy else ""
    return f"- CPU capacity taken by other processes and hypervisor steal, per section: {figures}.{warning}"


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


def step_section(b: dict, batch: int, device: str) -> list[str]:
    """Section b): step throughput, its breakdown, its operation counts and the share outside the networks."""
    seconds, counts = b["median_seconds"], b.get("operations", {})
    rows = [("augmentation (`MultiCropAugmenter`)", "augment"),
            ("networks' forward + backward (loss = sum of outputs)", "forward_backward"),
            ("objectives forward + backward (Sinkhorn, SwAV, MI, penalty)", "objectives"),
            ("Adam update", "optimizer")]
    share = b["outside_share"]

    def count(name: str) -> str:
        return f"{counts[name]:,}" if name in counts else "-"

    return [
        f"## b) Training step (`Trainer.step`, batch {batch})",
        "",
        f"Full step: {seconds['step'] * 1e3:,.0f} ms, **{b['images_per_second']:,.1f} images/s**, "
        f"{count('step')} ATen operations.",
        "",
        "| part | ms | share of step | ATen operations |",
        "|---|---:|---:|---:|",
        *[f"| {label} | {seconds[name] * 1e3:,.1f} | {seconds[name] / seconds['step']:.1%} | {count(name)} |"
          for label, name in rows],
        f"| rest (step minus the above: prototype normalisation, zero_grad, glue) | {b['rest_seconds'] * 1e3:,.1f} "
        f"| {b['rest_seconds'] / seconds['step']:.1%} | - |",
        "",
        f"Share outside the networks' forward and backward: 1 - fwd+bwd / step = **{share:.1%}** "
        f"(CPU target <= {OUTSIDE_SHARE_TARGET:.0%}: {verdict(share <= OUTSIDE_SHARE_TARGET, device)}). The parts "
        f"timed on their own (augmentation + objectives + Adam) add up to {b['outside_share_of_parts']:.1%} "
        "of the step; the *rest* row, a difference, also carries the timing noise of the two large figures. "
        "On a GPU, every ATen operation costs the host a kernel launch of some microseconds whatever its "
        "size; a step whose launches take longer than the GPU's work is bound by the host.",
        "",
        *per_view_norm_lines(seconds, counts, device),
    ]


def per_view_norm_lines(seconds: dict, counts: dict, device: str) -> list[str]:
    """The cost of per-view BatchNorm: the step beside the former step that normalised views together."""
    if "step_joint_norm" not in seconds:
        return []
    ratio = seconds["step"] / seconds["step_joint_norm"]
    return [
        "Per-view BatchNorm (each view normalised with its own statistics, as the published code) beside the "
        "former pass that normalised the views of a crop size together, timed interleaved in this run:",
        "",
        "| step | ms | ATen operations |",
        "|---|---:|---:|",
        f"| views normalised together (before) | {seconds['step_joint_norm'] * 1e3:,.1f} | "
        f"{counts.get('step_joint_norm', 0):,} |",
        f"| per-view normalisation (now) | {seconds['step'] * 1e3:,.1f} | {counts.get('step', 0):,} |",
        "",
        f"Ratio now / before: **{ratio:.3f}** (target <= {1 + PER_VIEW_SLOWDOWN_TARGET:.2f}: "
        f"{verdict(ratio <= 1 + PER_VIEW_SLOWDOWN_TARGET, device)}).",
        "",
    ]


def memory_row(record: dict, label: str) -> str:
    """One row of the memory table: RSS after imports and before fit, what fit adds, peaks, step time and
    the target."""
    limit = record["data_bytes"] + MEMORY_ALLOWANCE
    peak = max(record["peak_rss_fit"], record["peak_rss_loading"])
    cuda = mb(record["cuda_max_allocated"]) if "cuda_max_allocated" in record else "-"
    step = f"{record['step_seconds'] * 1e3:,.0f}" if "step_seconds" in record else "-"
    options = ", ".join(f"{name}={value!r}" for name, value in record.get("params", {}).items()) or "defaults"
    return (f"| {label}; {options} | {mb(record['rss_after_imports'])} | {mb(record['rss_before_fit'])} | "
            f"{mb(record['peak_rss_fit'] - record['rss_before_fit'])} | {mb(record['peak_rss_fit'])} | "
            f"{mb(peak)} | {cuda} | {step} | {mb(limit)}: {verdict(peak <= limit, record['device'])} |")


def predict_memory_section(c: dict, memory: dict, full_fit: dict | None) -> list[str]:
    """Section c): predict throughput and the memory table."""
    rates = c["images_per_second"]
    stopped = f"width {memory['width']}, batch {memory['batch_size']}, stopped after {memory['max_steps']} steps"
    rows = [memory_row(record, stopped) for record in (memory, *memory.get("options", ()))]
    if full_fit is not None:
        rows.append(memory_row(full_fit, f"width {full_fit['width']}, batch {full_fit['batch_size']}, "
                                         "the whole epoch and the final labelling"))
    return [
        "## c) Predict and memory",
        "",
        f"`predict` on {c['predict_images']:,} test images after a {c['fit_images']}-image, one-epoch fit: "
        f"**{rates['predict']:,.0f} images/s** (the network alone on the same normalised batches: "
        f"{rates['network']:,.0f} images/s).",
        "",
        f"Memory of `fit` on {memory['n_images']:,} training images ({mb(memory['data_bytes'])} of uint8), "
        "each fit in a fresh subprocess that imports, loads the data set, keeps a copy of the training "
        "images and frees the rest, then fits. *Fit peak*: the resident high-water mark (VmHWM) since it was "
        "reset (`/proc/self/clear_refs`) just before `fit`; *process peak*: the larger of that and the peak "
        "of imports and loading. A `Trainer.step` wrapper that raises an exception stops the first fit "
        "early.",
        "",
        "| fit | RSS after imports | RSS before fit | added by fit | fit peak RSS | process peak RSS "
        "| CUDA max allocated | step ms | target (data + 1.5 GB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        f"Of the RSS after imports, {mb(memory['rss_gpu_libraries'])} are resident pages of GPU software: "
        "the CUDA libraries that a CUDA build of torch loads on import, and Triton, which "
        "`torchvision.ops` (imported by `torchvision`) loads through `torch._dynamo`. A CPU-only build of "
        "torch loads neither.",
        "",
        f"For one step, the width-{memory['width']} network keeps {mb(memory['saved_activation_bytes'])} of "
        f"activations for the backward pass (batch {memory['batch_size']}, 6 views, parameters excluded); "
        f"its parameters take {mb(memory['parameter_bytes'])}, as much again for their gradients and twice "
        "as much for Adam's moments.",
        "",
        *later_epochs_lines(memory.get("later_epochs", [])),
    ]


def later_epochs_lines(records: list[dict]) -> list[str]:
    """What fit adds over one epoch and over several, without and with a checkpoint."""
    if not records:
        return []
    options = ", ".join(f"{name}={value!r}" for name, value in LEANEST.items())
    rows = [f"| {r['params']['max_epochs']} | {'yes' if 'checkpoint_path' in r['params'] else 'no'} | "
            f"{mb(r['peak_rss_fit'] - r['rss_before_fit'])} |" for r in records]
    return [f"Later epochs ({records[0]['n_images']} images, {options}, whole epochs with the final labelling): "
            "from the second epoch on, divergence rollback keeps a copy of the model and of Adam's state, "
            "unless `checkpoint_path` is set (the checkpoint of the last epoch is then what a rollback reads).",
            "", "| epochs | checkpoint_path | added by fit |", "|---:|---|---:|", *rows, ""]


def growth(xs: Sequence[float], ys: Sequence[float]) -> str:
    """Whether the marginal cost of ``ys`` over ``xs`` rises (super-linear growth) or stays level."""
    slopes = marginal_costs(xs, ys)
    if len(slopes) < 2:
        return "one interval only"
    if min(slopes) <= 0:
        return "no growth above the timing noise"
    ratio = slopes[-1] / slopes[0]
    kind = "super-linear" if ratio > SUPERLINEAR_RATIO else "linear within the noise"
    return f"last marginal cost / first = {ratio:.2f}: {kind}"


def size_section(records: list[dict], settings: dict) -> list[str]:
    """Section d), first part: fit and predict against the number of images."""
    sizes = [r["n_images"] for r in records]
    marginal = marginal_costs(sizes, [r["fit_seconds"] for r in records])
    lines = [
        f"## d) Scaling with the number of images (one epoch, ResNet-18 of width {settings['tiny_width']}, "
        f"batch {settings['batch_size']}, other parameters the defaults)",
        "",
        "`fit` is data preparation, the epoch, BatchNorm re-estimation (at most 50 batches) and labelling "
        "the training images; `predict` labels the same images again (the median of "
        f"{settings['predict_repeats']}). Each point is one fresh subprocess.",
        "",
        "| images | steps | fit s | marginal fit s per 1k images | epoch s | epoch ms per image | predict s "
        "| predict images/s | fit peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for index, r in enumerate(records):
        steps = r["n_images"] // r["batch_size"]
        per_image = r["epoch_seconds"] / (steps * r["batch_size"])
        slope = f"{marginal[index - 1] * 1e3:.2f}" if index else "-"
        lines.append(f"| {r['n_images']:,} | {steps} | {r['fit_seconds']:.1f} | {slope} | "
                     f"{r['epoch_seconds']:.1f} | {per_image * 1e3:.2f} | "
                     f"{r['predict_seconds']:.2f} | {r['n_images'] / r['predict_seconds']:,.0f} | "
                     f"{mb(r['peak_rss_fit'])} |")
    fits = growth(sizes, [r["fit_seconds"] for r in records])
    predicts = growth(sizes, [r["predict_seconds"] for r in records])
    return lines + ["", f"Growth with N: fit {fits}; predict {predicts}.", ""]


def prototype_section(records: list[dict], settings: dict, caches: str) -> list[str]:
    """Section d), second part: step and objective times against the number of prototypes, and the cost per
    element of an elementwise pass over scores of the same size."""
    batch = settings["batch_size"]
    counts = [r["n_prototypes"] for r in records]
    steps = [r["median_seconds"]["step"] for r in records]
    objectives = [r["median_seconds"]["objectives"] for r in records]
    per_element = [r["median_seconds"]["elementwise"] / r["score_elements"] for r in records]
    step_slopes, objective_slopes = marginal_costs(counts, steps), marginal_costs(counts, objectives)
    lines = [
        f"## d) Scaling with the number of prototypes K' (benchmark network, batch {batch})",
        "",
        f"Step: median of {settings['sweep_repeats']}; objectives (forward and backward) and the elementwise "
        f"pass (one division over float32 scores of all the views, {batch} x views x K'): medians of "
        f"{settings['objective_repeats']}. CPU caches: {caches}.",
        "",
        "| K' | step ms | images/s | objectives ms | marginal step ms per 1k K' "
        "| marginal objectives ms per 1k K' | scores MB | elementwise ns per element |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for index, (count, record) in enumerate(zip(counts, records)):
        slopes = (f"{step_slopes[index - 1] * 1e6:.1f} | {objective_slopes[index - 1] * 1e6:.1f}" if index
                  else "- | -")
        lines.append(f"| {count:,} | {steps[index] * 1e3:,.0f} | {batch / steps[index]:,.1f} | "
                     f"{objectives[index] * 1e3:,.1f} | {slopes} | {record['score_elements'] * 4e-6:,.1f} | "
                     f"{per_element[index] * 1e9:.2f} |")
    cheapest = int(np.argmin(per_element))
    if cheapest == len(counts) - 1:
        traffic = (f"An elementwise pass is cheapest per element at the largest K' ({per_element[-1] * 1e9:.2f} "
                  "ns): the scores' size costs no memory traffic here.")
    else:
        traffic = (f"An elementwise pass costs {per_element[-1] / per_element[cheapest]:.2f} times as much per "
                  f"element at K' = {counts[-1]:,} as at its cheapest (K' = {counts[cheapest]:,}; small passes "
                  "pay a fixed cost per call): the arithmetic per element is the same, so a ratio above 1 is "
                  "memory traffic (the scores outgrow the caches); the objectives are mostly such passes "
                  "(softmaxes, Sinkhorn's scalings, the losses' products).")
    return lines + ["", f"Growth with K': step {growth(counts, steps)}; objectives "
                        f"{growth(counts, objectives)}. {traffic}", ""]


#: a last marginal cost above this multiple of the first is reported as super-linear growth
SUPERLINEAR_RATIO = 1.25

SCALING_NOTES = [
    "What to expect. Every cost of a step is linear in K': the prototype layer (6B x 128 x K'), the "
    "softmaxes over K' of the 6 views, Sinkhorn-Knopp (O(B K') per iteration, 3 iterations for each of the 2 "
    "large views, batched), Adam on the 128 x K' prototypes, and the mutual-information loss, whose joint "
    "matrices (K x K' for each of the 36 (head view, prototype view) pairs) come from one (6K x B) by "
    "(B x 6K') product. Nothing is "
    "quadratic in K' or in the batch; the 36 pairs are quadratic only in the number of views. A fit is one "
    "pass over the data plus a fixed cost (model construction, pixel statistics, BatchNorm re-estimation, "
    "which grows with N until there are 50 batches), so fit and predict time should grow linearly with N.",
    "",
]


def report(results: dict) -> str:
    """The markdown report of ``results``."""
    settings, batch, device = results["settings"], results["settings"]["batch_size"], results["settings"]["device"]
    sweep = results["size_sweep"]
    full_fit = next((r for r in sweep if r["n_images"] == results["memory"]["n_images"]), None)
    lines = (header(results) + augmentation_section(results["augmentation"], batch, device)
             + step_section(results["step"], batch, device)
             + predict_memory_section(results["predict"], results["memory"], full_fit)
             + size_section(sweep, settings)
             + prototype_section(results["prototype_sweep"], settings, results["machine"]["caches"])
             + SCALING_NOTES + [f"Total benchmark time: {results['total_seconds'] / 60:.1f} min."])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def parse_settings(argv: Sequence[str] | None = None) -> tuple[Settings, str | None, str | None]:
    """The run's settings, the ``--output`` stem and the (internal) ``--fit-job`` from the command line."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/cifar10", help="CIFAR-10 ImageFolder tree (train/, test/)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64, help="backbone width of the benchmark network")
    parser.add_argument("--tiny-width", type=int, default=8, help="backbone width of the size sweep's fits")
    parser.add_argument("--sizes", type=int, nargs="+", help="numbers of images of the fit/predict sweep")
    parser.add_argument("--prototypes", type=int, nargs="+", help="prototype counts of the step sweep")
    parser.add_argument("--repeats", type=int, help="timed repetitions of sections a) and b)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions")
    parser.add_argument("--output", help="also write OUTPUT.md and OUTPUT.json")
    parser.add_argument("--fit-job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    run = dict(QUICK_RUN if args.quick else FULL_RUN)
    run.update({key: tuple(value) if isinstance(value, list) else value
                for key, value in (("sizes", args.sizes), ("prototypes", args.prototypes),
                                   ("repeats", args.repeats)) if value is not None})
    settings = Settings(data=args.data, device=args.device, batch_size=args.batch_size, width=args.width,
                        tiny_width=args.tiny_width, n_prototypes=1000, head_hidden_dim=1024, **run)
    return settings, args.output, args.fit_job


#: the measurements, in the order in which they run
SECTIONS = {"augmentation": augmentation_benchmark, "step": step_benchmark, "predict": predict_benchmark,
            "memory": memory_benchmark, "size_sweep": size_sweep, "prototype_sweep": prototype_sweep}


def benchmark(settings: Settings) -> dict:
    """Every section's measurements, with the machine and the settings."""
    start = time.perf_counter()
    results = {"machine": machine(), "settings": asdict(settings), "others_cpu_share": {}}
    data = load_data(settings.data)
    results["data_source"] = data.source
    for name, section in SECTIONS.items():
        section_start, cpu_before = time.perf_counter(), cpu_seconds()
        results[name] = section(data, settings)
        seconds = time.perf_counter() - section_start
        cpu_after = cpu_seconds()
        others = (cpu_after[0] - cpu_before[0]) - (cpu_after[1] - cpu_before[1])
        results["others_cpu_share"][name] = max(0.0, others / (seconds * (os.cpu_count() or 1)))
        print(f"[{name}: {seconds:.0f} s]", file=sys.stderr, flush=True)
    results["total_seconds"] = time.perf_counter() - start
    return results


def main(argv: Sequence[str] | None = None) -> None:
    settings, output, fit_job = parse_settings(argv)
    if fit_job is not None:
        print(json.dumps(run_fit_job(FitJob(**json.loads(fit_job)))))
        return
    results = benchmark(settings)
    if output is not None:
        stem = Path(output)
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    text = report(results)
    print(text)
    if output is not None:
        stem.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
