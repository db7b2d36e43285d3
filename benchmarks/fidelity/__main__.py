"""How close our training step is to the published one: loss and gradients beside a per-view transcription.

The transcription is the one the test suite checks against (:mod:`imc_cluster.testing.reference`, used by
``tests/training/test_fidelity.py``: a plain network of torchvision blocks and torch BatchNorm run once per
view, the losses as docs/method.md#losses writes them). For the default configuration (ResNet-18 of width 64,
1000 prototypes, 2 x 28 + 4 x 18 crops) and for the MLP, at batch sizes 32 and 256, on the same weights and
views, it reports the relative difference of the total loss, the smallest cosine similarity of any
parameter's gradient, and the cosine of the whole encoder's gradient (per-view BatchNorm,
docs/method.md#per-view-batchnorm).

    python -m benchmarks.fidelity --output benchmarks/results/fidelity_cpu.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from imc_cluster.testing.pairing import build, our_step
from imc_cluster.testing.reference import BEFORE_BATCH_NORM, cosine, per_view_inputs, reference_loss


def compare(backbone: str, batch: int) -> dict:
    """Loss and gradient agreement of one configuration."""
    model, reference = build(backbone)
    model.train(), reference.train()
    views = per_view_inputs(backbone, batch)
    ours = our_step(model, views, 2)["loss"]
    ours.backward()
    theirs = reference_loss(reference, views, 2)
    theirs.backward()
    expected = dict(reference.named_parameters())
    cosines = {
        name: cosine(p.grad, expected[name].grad).item()
        for name, p in model.named_parameters()
        if name not in BEFORE_BATCH_NORM
    }
    encoder = [name for name in cosines if name.startswith("encoder")]
    whole = cosine(
        torch.cat([dict(model.named_parameters())[n].grad.flatten() for n in encoder]),
        torch.cat([expected[n].grad.flatten() for n in encoder]),
    ).item()
    return {
        "loss": abs(ours.item() - theirs.item()) / abs(theirs.item()),
        "min_cosine": min(cosines.values()),
        "worst": min(cosines, key=cosines.get),
        "encoder_cosine": whole,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fidelity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--output", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    lines = [
        "| backbone | batch | loss rel. difference | min gradient cosine (parameter) | "
        "encoder gradient cosine |",
        "|---|---:|---:|---:|---:|",
    ]
    for backbone in ("resnet18", "mlp"):
        for batch in args.batches:
            r = compare(backbone, batch)
            lines.append(
                f"| {backbone} | {batch} | {r['loss']:.2e} | {r['min_cosine']:.8f} (`{r['worst']}`) | "
                f"{r['encoder_cosine']:.8f} |"
            )
            print(lines[-1], flush=True)
    if args.output:
        Path(args.output).write_text(
            "\n".join(
                [
                    "Our training step beside the per-view transcription of the published one "
                    "(`imc_cluster/testing/reference.py`, which the test suite checks against), "
                    "same weights and views, float32 on the CPU; `python -m benchmarks.fidelity`. "
                    "Targets: loss within 1e-5 relative, every gradient cosine >= 0.99999 "
                    "(biases that a BatchNorm follows, whose exact gradient is zero, "
                    "left out).",
                    "",
                    *lines,
                    "",
                ]
            )
        )


if __name__ == "__main__":
    main()
