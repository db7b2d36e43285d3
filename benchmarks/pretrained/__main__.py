"""A pretrained encoder on the CPU, in four sections (one report):

1. the frozen encoder's feature extraction (images/s, GFLOPS) against the machine's peak matmul GFLOPS, in
   float32 and bf16, and the network's forward pass by memory format, batch size and threads;
2. bf16 beside float32 extraction: feature differences, and the agreement of k-means on either;
3. the laptop workflow: a folder of photos to ``clusters.csv`` and ``clusters.png`` with a frozen network,
   timed by phase, then again with another ``n_clusters`` (decoded images and features cached);
4. k-means, the IMC-SwAV head on the frozen encoder and the whole method fine-tuned, on labelled folders
   (CIFAR-10 test images, scikit-learn's digits), with ACC/NMI/ARI.

    python -m benchmarks.pretrained --data data/cifar10 --output benchmarks/results/pretrained_cpu.md

Without ``--weights`` the network's random initial weights (seed 0) are saved to a file and used as
``weights=PATH``: the speed figures hold, the quality figures say nothing. ``--weights pretrained`` uses
the library's published weights (downloaded once by the library), ``--weights PATH`` a local file.
``--data`` is the extracted CIFAR-10 JPEG tree (``train/<class>/*.jpg``, ``test/<class>/*.jpg``).
``--quick`` is a smoke run on a few images.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import machine
from benchmarks.pretrained.compare import compare_section
from benchmarks.pretrained.laptop import laptop_section
from benchmarks.pretrained.shared import LAPTOP, Run, photo_folder, random_weights_file, weights_label
from benchmarks.pretrained.speed import speed_sections
from imc_cluster.data.folders import load_image_folder
from imc_cluster.model.pretrained import check_weights, network_preprocessing

SECTIONS = ("speed", "laptop", "compare")
#: the frozen fit of section 4: batches and warm-up for a few hundred images
COMPARE_FROZEN = {**LAPTOP, "batch_size": 50, "max_epochs": 50, "warmup_updates": 50, "n_prototypes": 100}
#: the fine-tuned fit of section 4: a short run, in a batch whose activations fit a laptop's memory
COMPARE_FINETUNED = {
    "n_large_crops": 2,
    "n_small_crops": 2,
    "batch_size": 16,
    "max_epochs": 1,
    "warmup_updates": 10,
    "n_prototypes": 100,
    "random_state": 0,
}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pretrained",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backbone", default="torchvision:resnet50", help="LIBRARY:NAME of the network")
    parser.add_argument("--weights", help="'pretrained' or a weights file; default: random weights, saved")
    parser.add_argument("--data", default="data/cifar10", help="extracted CIFAR-10 JPEG tree")
    parser.add_argument("--images", type=int, default=3000, help="photos of the laptop workflow (section 3)")
    parser.add_argument("--speed-images", type=int, default=256, help="images of sections 1 and 2")
    parser.add_argument("--per-class", type=int, default=20, help="images per class in section 4")
    parser.add_argument(
        "--batches", type=int, nargs="+", default=[16, 64], help="batches of the forward pass"
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to run")
    parser.add_argument("--quick", action="store_true", help="a smoke run on a few images")
    parser.add_argument("--output", help="also write the report (markdown) to this file")
    return parser.parse_args()


def report(args: argparse.Namespace, work: Path) -> Iterator[list[str]]:
    """Run the chosen sections in ``work``, yielding the report's lines part by part: the header, every
    section as it ends, and the load of the machine."""
    random_weights = args.weights is None
    weights = str(random_weights_file(args.backbone, work / "weights.pt")) if random_weights else args.weights
    check_weights(weights, args.backbone)
    run = Run(args.backbone, weights, random_weights, Path(args.data), work)
    laptop, frozen, finetuned = dict(LAPTOP), dict(COMPARE_FROZEN), dict(COMPARE_FINETUNED)
    if args.quick:
        laptop.update(max_epochs=2, warmup_updates=2, n_prototypes=10)
        frozen.update(max_epochs=2, warmup_updates=2, n_prototypes=10, batch_size=10)
        finetuned.update(batch_size=10, warmup_updates=2, n_prototypes=10, bn_recalibration_batches=1)
    about = machine()
    loads = [("start", os.getloadavg())]
    header = [
        f"# `{args.backbone}` as a pretrained encoder on the CPU",
        "",
        f"Command: `python -m benchmarks.pretrained {shlex.join(sys.argv[1:])}`",
        "",
        f"Machine: {about['cpu']}, {about['cores']} cores ({about['caches']}), no GPU; torch "
        f"{about['torch']} ({about['torch_threads']} threads), torchvision {about['torchvision']}, Python "
        f"{about['python']}; {about['date']}.",
        "",
        f"Weights: {weights_label(run)}.",
        "",
    ]
    if random_weights:
        header += [
            "**These are random weights.** Timings (sections 1 and 3) hold for any weights of this network; "
            "every clustering score (sections 2 and 4) describes random features and says nothing about "
            "the quality of clustering with the published weights. Rerun with `--weights pretrained` (or "
            "a downloaded weights file) for those.",
            "",
        ]
    yield header
    if "speed" in args.sections:
        resize = network_preprocessing(args.backbone).resize
        n_images = 16 if args.quick else args.speed_images
        photo_folder(run.data, work / "speed_photos", n_images, seed=1)
        images = load_image_folder(work / "speed_photos", resize, cache_dir=work / "speed_decoded").images
        yield speed_sections(run, images, (2, 4) if args.quick else tuple(args.batches))
        loads.append(("after sections 1-2", os.getloadavg()))
    if "laptop" in args.sections:
        yield laptop_section(run, 40 if args.quick else args.images, laptop, (20, 10))
        loads.append(("after section 3", os.getloadavg()))
    if "compare" in args.sections:
        yield compare_section(run, 2 if args.quick else args.per_class, frozen, finetuned)
        loads.append(("after section 4", os.getloadavg()))
    shared = any(load[0] > about["cores"] + 0.5 for _, load in loads)
    yield [
        "## Load of the machine",
        "",
        "| when | load average 1 / 5 / 15 min |",
        "|---|---|",
        *(f"| {when} | {' / '.join(f'{value:.2f}' for value in load)} |" for when, load in loads),
        "",
        (
            f"The machine was shared: other work ran beside this benchmark (1-minute load above its "
            f"{about['cores']} cores at some point, CPU shares below 1 in the tables), so its timings are "
            "slower than an idle machine gives, and its % of peak less certain."
            if shared
            else "The load stayed within the machine's cores."
        ),
        "",
    ]


def main() -> None:
    args = parse()
    lines = []
    with tempfile.TemporaryDirectory(prefix="imc_pretrained_") as work:
        for part in report(args, Path(work)):
            print("\n".join(part), flush=True)
            lines += part
            if args.output:  # after every section: an interrupted run keeps what it measured
                Path(args.output).write_text("\n".join(lines))


if __name__ == "__main__":
    main()
