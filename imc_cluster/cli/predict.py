"""The ``imc-cluster predict`` command: the cluster of every image file of a folder.

    imc-cluster predict --cpt_load_path ./run/model.cpt --path ./photos --output_dir ./clusters

It runs :func:`~imc_cluster.prediction.folder.predict_folder` and writes ``clusters.csv`` (one row per
readable file), ``clusters.png`` (the most typical images of every cluster) and ``summary.json`` into
``--output_dir``; ``--copy_to DIR`` or ``--link_to DIR`` also copies or links every readable file into
``DIR/cluster_<k>/`` (``DIR/uncertain/`` below ``--min_confidence``). Files that cannot be read are warned
about on stderr and listed in the summary.
"""

from __future__ import annotations

import argparse
import sys

from imc_cluster.prediction.folder import FolderPrediction, predict_folder

__all__ = ["predict"]

#: unreadable files named one by one on stderr; the others are counted
_NAMED_FAILURES = 10


def _warn(prediction: FolderPrediction) -> None:
    """Name the unreadable files on stderr (the first few; the summary lists all)."""
    for failure in prediction.failures[:_NAMED_FAILURES]:
        print(f"imc-cluster: warning: skipped {failure.path}: {failure.error}", file=sys.stderr)
    if len(prediction.failures) > _NAMED_FAILURES:
        print(
            f"imc-cluster: warning: skipped {len(prediction.failures) - _NAMED_FAILURES} more unreadable "
            "files (see summary.json)",
            file=sys.stderr,
        )


def predict(args: argparse.Namespace, device: str | None) -> FolderPrediction:
    """Run ``predict`` for parsed arguments, on ``device`` (the estimator's ``device``, None for the
    checkpoint's), and print where the results are."""
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be a positive number of images, got {args.batch_size}.")
    prediction = predict_folder(
        args.cpt_load_path,
        args.path,
        args.output_dir,
        batch_size=args.batch_size,
        device=device,
        progress=not args.quiet and sys.stderr.isatty(),
        copy_to=args.copy_to,
        link_to=args.link_to,
        min_confidence=args.min_confidence,
    )
    _warn(prediction)
    sizes = prediction.cluster_sizes
    largest = sorted(range(len(sizes)), key=lambda cluster: -sizes[cluster])[:5]
    print(
        f"{len(prediction.paths)} of {prediction.n_files} image files in {int((sizes > 0).sum())} of "
        f"{len(sizes)} clusters ({len(prediction.failures)} unreadable); largest clusters: "
        + ", ".join(f"{cluster}: {sizes[cluster]}" for cluster in largest if sizes[cluster])
    )
    if prediction.placement is not None:
        uncertain = int(prediction.uncertain.sum())
        print(
            f"{'copied' if prediction.placement.mode == 'copy' else 'linked'} {len(prediction.paths)} files "
            f"into {prediction.placement.folder} ({uncertain} uncertain)"
        )
    print(f"wrote {args.output_dir}/clusters.csv, clusters.png and summary.json", flush=True)
    return prediction
