"""How close our training step is to the published one: loss and gradients beside a per-view transcription.

The transcription is the one the test suite checks against (``tests/test_fidelity.py``: a plain network of
torchvision blocks and torch BatchNorm run once per view, the losses as SPEC.md writes them). For the
default configuration (ResNet-18 of width 64, 1000 prototypes, 2 x 28 + 4 x 18 crops) and for the MLP, at
batch sizes 32 and 256, on the same weights and views, it reports the relative difference of the total loss,
the smallest cosine similarity of any parameter's gradient, and the cosine of the whole encoder's gradient,
for per-view BatchNorm (the default) and for the former pass that normalised the views of a crop size
together.

    python benchmarks/fidelity.py --output benchmarks/results/fidelity_cpu.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_fidelity import BEFORE_BATCH_NORM, build, cosine, our_step, per_view_inputs, reference_loss  # noqa: E402


def compare(backbone: str, batch: int, per_view: bool) -> dict:
    """Loss and gradient agreement of one configuration."""
    model, reference = build(backbone)
    model.per_view_norm = per_view
    model.train(), reference.train()
    views = per_view_inputs(backbone, batch)
    ours = our_step(model, views, 2)["loss"]
    ours.backward()
    theirs = reference_loss(reference, views, 2)
    theirs.backward()
    expected = dict(reference.named_parameters())
    cosines = {name: cosine(p.grad, expected[name].grad).item() for name, p in model.named_parameters()
               if name not in BEFORE_BATCH_NORM}
    encoder = [name for name in cosines if name.startswith("encoder")]
    whole = cosine(torch.cat([dict(model.named_parameters())[n].grad.flatten() for n in encoder]),
                   torch.cat([expected[n].grad.flatten() for n in encoder])).item()
    return {"loss": abs(ours.item() - theirs.item()) / abs(theirs.item()), "min_cosine": min(cosines.values()),
            "worst": min(cosines, key=cosines.get), "encoder_cosine": whole}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--output", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    lines = ["| backbone | batch | BatchNorm | loss rel. difference | min gradient cosine (parameter) | "
             "encoder gradient cosine |", "|---|---:|---|---:|---:|---:|"]
    for backbone in ("resnet18", "mlp"):
        for batch in args.batches:
            for per_view in (True, False):
                r = compare(backbone, batch, per_view)
                lines.append(f"| {backbone} | {batch} | {'per view' if per_view else 'views together (former)'} | "
                             f"{r['loss']:.2e} | {r['min_cosine']:.8f} (`{r['worst']}`) | {r['encoder_cosine']:.8f} |")
                print(lines[-1], flush=True)
    if args.output:
        Path(args.output).write_text("\n".join([
            "Our training step beside the per-view transcription of the published one (`tests/test_fidelity.py`), "
            "same weights and views, float32 on the CPU; `python benchmarks/fidelity.py`. Targets: loss within "
            "1e-5 relative, every gradient cosine >= 0.99999 (biases that a BatchNorm follows, whose exact gradient "
            "is zero, left out).", "", *lines, ""]))


if __name__ == "__main__":
    main()
