"""Section c) of ``python -m benchmarks.speed``: predict throughput and the memory of ``fit``.

``IMCSwAVClustering.predict`` throughput beside the network alone; the peak memory of ``fit`` on the
training images, each fit in a fresh subprocess (``python -m benchmarks.speed --fit-job``, which runs
:func:`run_fit_job`), with the defaults and with the memory-saving options, and what later epochs add with
and without a checkpoint file; the activations one step keeps. Memory figures come from
``/proc/self/status`` and ``/proc/self/smaps`` (Linux). Also the section's report.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from benchmarks.speed.shared import (
    N_CLUSTERS,
    Data,
    Settings,
    benchmark_estimator,
    build_trainer,
    channels_first,
    interleaved_times,
    load_data,
    mb,
    medians,
    synchronize,
    training_batch,
    verdict,
)
from imc_cluster import IMCSwAVClustering
from imc_cluster.inference.outputs import outputs
from imc_cluster.training.trainer import Trainer

#: CPU target: memory beyond the uint8 training images
MEMORY_ALLOWANCE = 1.5e9
#: the memory-saving settings whose fit peak and step time section c) compares with the defaults
MEMORY_OPTIONS = (
    {"activation_checkpointing": True},
    {"precision": "bfloat16"},
    {"precision": "bfloat16", "activation_checkpointing": True},
)
#: the leanest of them, and the images and epochs of the fits that show what later epochs add
LEANEST = MEMORY_OPTIONS[-1]
LATER_EPOCHS_IMAGES, LATER_EPOCHS = 512, 3
#: the module whose ``--fit-job`` option runs :func:`run_fit_job` in a fresh process (``python -m``; the
#: subprocess inherits the working directory and environment that made ``benchmarks`` importable here)
ENTRY_POINT = "benchmarks.speed"
#: mapped files whose resident pages are GPU software: the CUDA libraries of a CUDA build of torch, Triton
GPU_LIBRARY = re.compile(r"/nvidia/|/triton/|/cuda/bindings/|libtorch_cuda|libc10_cuda|libcuda|libnccl")


@dataclass(frozen=True)
class FitJob:
    """One ``fit`` (and optionally ``predict``) in a fresh subprocess, for time and peak memory.

    Parameters
    ----------
    data : str
        Path handed to :func:`~benchmarks.speed.shared.load_data`.
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


# ---------------------------------------------------------------- process memory


def proc_status(field: str) -> int:
    """A memory field of ``/proc/self/status`` (such as "VmRSS" or "VmHWM"), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


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


def reset_peak_rss() -> None:
    """Reset the resident-set high-water mark (VmHWM) to the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


# ---------------------------------------------------------------- measurements


def predict_benchmark(data: Data, settings: Settings) -> dict:
    """Predict throughput of a briefly fitted estimator of the benchmark configuration (section c)."""
    fit_images = data.train[: settings.predict_fit_batches * settings.batch_size]
    estimator = benchmark_estimator(settings, max_epochs=1)
    start = time.perf_counter()
    estimator.fit(fit_images)
    fit_seconds = time.perf_counter() - start
    images = data.test[: settings.predict_images]
    tensors = channels_first(images)
    estimator.predict(images[: settings.batch_size])  # warm-up
    # "network": predict without its input handling, on the images as predict encodes them
    samples = interleaved_times(
        {
            "predict": lambda: estimator.predict(images),
            "network": lambda: outputs(
                estimator.model_.cluster_logits,
                estimator.model_,
                estimator.inputs_,
                tensors,
                device=estimator.device_,
                batch_size=estimator.batch_size,
                precision=estimator.precision,
            ),
        },
        torch.device(settings.device),
        0,
        settings.predict_repeats,
    )
    rates = {name: len(images) / seconds for name, seconds in medians(samples).items()}
    return {
        "images_per_second": rates,
        "fit_images": len(fit_images),
        "fit_seconds": fit_seconds,
        "predict_images": len(images),
        "seconds": samples,
    }


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
    images = data.train[: job.n_images].copy()
    record.update(data_bytes=images.nbytes, peak_rss_loading=peak_rss())
    del data
    record["rss_before_fit"] = proc_status("VmRSS")
    durations = stop_fit_after(job.max_steps) if job.max_steps is not None else []
    params = {"max_epochs": 1, **job.params}
    estimator = IMCSwAVClustering(
        N_CLUSTERS,
        backbone_width=job.width,
        batch_size=job.batch_size,
        device=job.device,
        random_state=0,
        **params,
    )
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
        times = interleaved_times(
            {"predict": lambda: estimator.predict(images)}, torch.device(job.device), 0, job.predict_repeats
        )
        record["predict_seconds"] = medians(times)["predict"]
    return record


def fit_in_subprocess(job: FitJob) -> dict:
    """:func:`run_fit_job` in a fresh Python process, so that its memory peaks are its own."""
    command = [sys.executable, "-m", ENTRY_POINT, "--fit-job", json.dumps(asdict(job))]
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

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), trainer.autocast():
        trainer.model(views, batch.shape[0])
    return sum(storages.values())


def memory_benchmark(data: Data, settings: Settings) -> dict:
    """Peak memory of fit on all training images with the benchmark network, stopped early, and what the
    network needs for one step: activations kept for backward, and parameters (section c)."""
    job = FitJob(
        settings.data,
        len(data.train),
        settings.width,
        settings.batch_size,
        settings.device,
        settings.memory_steps,
        predict_repeats=0,
    )
    trainer = build_trainer(data, settings, settings.n_prototypes)
    parameter_bytes = sum(p.numel() * p.element_size() for p in trainer.model.parameters())
    options = [fit_in_subprocess(FitJob(**{**asdict(job), "params": params})) for params in MEMORY_OPTIONS]
    return {
        **fit_in_subprocess(job),
        "parameter_bytes": parameter_bytes,
        "options": options,
        "later_epochs": later_epochs_memory(settings),
        "saved_activation_bytes": saved_activation_bytes(trainer, training_batch(data, settings)),
    }


def later_epochs_memory(settings: Settings) -> list[dict]:
    """What fit adds in one epoch and in several, without and with a checkpoint file (from the second
    epoch on, divergence rollback keeps a copy of the model and optimiser unless a checkpoint holds it)."""
    checkpoint = str(Path(tempfile.mkdtemp(prefix="imc-speed-")) / "model.cpt")
    runs = (
        {"max_epochs": 1},
        {"max_epochs": LATER_EPOCHS},
        {"max_epochs": LATER_EPOCHS, "checkpoint_path": checkpoint},
    )
    return [
        fit_in_subprocess(
            FitJob(
                settings.data,
                LATER_EPOCHS_IMAGES,
                settings.width,
                settings.batch_size,
                settings.device,
                None,
                0,
                {**LEANEST, **run},
            )
        )
        for run in runs
    ]


# ---------------------------------------------------------------- the report


def memory_row(record: dict, label: str) -> str:
    """One row of the memory table: RSS after imports and before fit, what fit adds, peaks, step time and
    the target."""
    limit = record["data_bytes"] + MEMORY_ALLOWANCE
    peak = max(record["peak_rss_fit"], record["peak_rss_loading"])
    cuda = mb(record["cuda_max_allocated"]) if "cuda_max_allocated" in record else "-"
    step = f"{record['step_seconds'] * 1e3:,.0f}" if "step_seconds" in record else "-"
    options = ", ".join(f"{name}={value!r}" for name, value in record.get("params", {}).items()) or "defaults"
    return (
        f"| {label}; {options} | {mb(record['rss_after_imports'])} | {mb(record['rss_before_fit'])} | "
        f"{mb(record['peak_rss_fit'] - record['rss_before_fit'])} | {mb(record['peak_rss_fit'])} | "
        f"{mb(peak)} | {cuda} | {step} | {mb(limit)}: {verdict(peak <= limit, record['device'])} |"
    )


def predict_memory_section(c: dict, memory: dict, full_fit: dict | None) -> list[str]:
    """Section c): predict throughput and the memory table."""
    rates = c["images_per_second"]
    stopped = (
        f"width {memory['width']}, batch {memory['batch_size']}, stopped after {memory['max_steps']} steps"
    )
    rows = [memory_row(record, stopped) for record in (memory, *memory.get("options", ()))]
    if full_fit is not None:
        rows.append(
            memory_row(
                full_fit,
                f"width {full_fit['width']}, batch {full_fit['batch_size']}, "
                "the whole epoch and the final labelling",
            )
        )
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
    rows = [
        f"| {r['params']['max_epochs']} | {'yes' if 'checkpoint_path' in r['params'] else 'no'} | "
        f"{mb(r['peak_rss_fit'] - r['rss_before_fit'])} |"
        for r in records
    ]
    return [
        f"Later epochs ({records[0]['n_images']} images, {options}, whole epochs with the final "
        "labelling): from the second epoch on, divergence rollback keeps a copy of the model and of "
        "Adam's state, unless `checkpoint_path` is set (the checkpoint of the last epoch is then what a "
        "rollback reads).",
        "",
        "| epochs | checkpoint_path | added by fit |",
        "|---:|---|---:|",
        *rows,
        "",
    ]
