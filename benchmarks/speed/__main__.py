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

    python -m benchmarks.speed                                      # about 8 minutes on a 2-core CPU
    python -m benchmarks.speed --quick                              # smoke run, under 2 minutes
    python -m benchmarks.speed --output benchmarks/results/speed_cpu  # also writes .md and .json

Each section's measurement and report lines live in its own module of this package: ``augmentation`` (a),
``step`` (b), ``memory`` (c) and ``scaling`` (d), with what they share in ``shared``; this module is the
command line, the run and the report. ``python -m benchmarks.speed.epochs`` times full-configuration epochs
on a GPU.

Times are ``time.perf_counter`` wall-clock medians over repetitions that follow warm-up ones (on a GPU,
after synchronising). Tasks that are compared with each other take turns within every repetition, so that
changes in the load of a shared machine affect them alike. The CPU time that other processes (and the
hypervisor) took during every section is reported, since they distort every figure: the many short
multi-threaded operations slow down far more than in proportion when a core is taken away. Memory figures
come from ``/proc/self/status`` (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from benchmarks.common import cpu_seconds, machine
from benchmarks.speed.augmentation import augmentation_benchmark, augmentation_section
from benchmarks.speed.memory import (
    FitJob,
    memory_benchmark,
    predict_benchmark,
    predict_memory_section,
    run_fit_job,
)
from benchmarks.speed.scaling import (
    SCALING_NOTES,
    prototype_section,
    prototype_sweep,
    size_section,
    size_sweep,
)
from benchmarks.speed.shared import N_CLUSTERS, Settings, load_data
from benchmarks.speed.step import step_benchmark, step_section

#: share of the CPUs taken by other processes in a section above which the report warns
CONTENTION_LIMIT = 0.05

#: run sizes of the default run and of ``--quick``
FULL_RUN = {
    "warmup": 2,
    "repeats": 7,
    "sweep_repeats": 3,
    "objective_repeats": 25,
    "augment_batches": 20,
    "torchvision_images": 2560,
    "predict_fit_batches": 4,
    "predict_images": 1024,
    "predict_repeats": 3,
    "memory_steps": 5,
    "sizes": (1000, 5000, 20000, 50000),
    "prototypes": (100, 1000, 3000, 10000),
}
QUICK_RUN = {
    "warmup": 1,
    "repeats": 3,
    "sweep_repeats": 1,
    "objective_repeats": 3,
    "augment_batches": 4,
    "torchvision_images": 640,
    "predict_fit_batches": 2,
    "predict_images": 256,
    "predict_repeats": 1,
    "memory_steps": 2,
    "sizes": (1000, 2000),
    "prototypes": (100, 1000),
}

#: the measurements, in the order in which they run
SECTIONS = {
    "augmentation": augmentation_benchmark,
    "step": step_benchmark,
    "predict": predict_benchmark,
    "memory": memory_benchmark,
    "size_sweep": size_sweep,
    "prototype_sweep": prototype_sweep,
}


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


# ---------------------------------------------------------------- the report


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


def report(results: dict) -> str:
    """The markdown report of ``results``."""
    settings = results["settings"]
    batch, device = settings["batch_size"], settings["device"]
    sweep = results["size_sweep"]
    full_fit = next((r for r in sweep if r["n_images"] == results["memory"]["n_images"]), None)
    lines = (
        header(results)
        + augmentation_section(results["augmentation"], batch, device)
        + step_section(results["step"], batch, device)
        + predict_memory_section(results["predict"], results["memory"], full_fit)
        + size_section(sweep, settings)
        + prototype_section(results["prototype_sweep"], settings, results["machine"]["caches"])
        + SCALING_NOTES
        + [f"Total benchmark time: {results['total_seconds'] / 60:.1f} min."]
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def parse_settings(argv: Sequence[str] | None = None) -> tuple[Settings, str | None, str | None]:
    """The run's settings, the ``--output`` stem and the (internal) ``--fit-job`` from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    run.update(
        {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in (
                ("sizes", args.sizes),
                ("prototypes", args.prototypes),
                ("repeats", args.repeats),
            )
            if value is not None
        }
    )
    settings = Settings(
        data=args.data,
        device=args.device,
        batch_size=args.batch_size,
        width=args.width,
        tiny_width=args.tiny_width,
        n_prototypes=1000,
        head_hidden_dim=1024,
        **run,
    )
    return settings, args.output, args.fit_job


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
