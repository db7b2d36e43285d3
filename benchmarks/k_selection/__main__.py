"""Which label-free criterion picks the number of clusters K? A study on data of known K.

For every data set (Gaussian blobs with the MLP encoder; scikit-learn's digits, all ten classes or a subset,
with the digits preset's settings and fewer epochs) and every candidate K, IMC-SwAV is fitted once with
the same seed (``n_clusters`` is the only difference; the cluster heads train on detached features, so the
encoder is the same for every K), and each criterion of :mod:`imc_cluster.criteria` scores the fit. A
criterion chooses the candidate it scores highest; the report counts how often that is the true K.

    python -m benchmarks.k_selection            # the study, written to benchmarks/results/k_selection_cpu.md
    python -m benchmarks.k_selection --quick    # a smoke test: two small data sets, three candidates each
    python -m benchmarks.k_selection --candidates   # one fit per data set, every candidate K in it

With ``--candidates`` the estimator chooses K (its report: benchmarks/results/k_candidates_cpu.md), the
digits fits run half the digits preset's schedule (75 epochs, its warm-up, its milestones scaled), and the
report is written again after every data set, so that a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.common import machine
from benchmarks.k_selection.candidates import candidates_report, run_candidates
from benchmarks.k_selection.data import N_HEADS, SEED, Study, studies
from benchmarks.k_selection.report import report
from benchmarks.k_selection.scoring import scores

#: where the full study writes its report
RESULTS = "benchmarks/results/k_selection_cpu.md"
#: where the study through the estimator's choice (``--candidates``) writes its report
CANDIDATE_RESULTS = "benchmarks/results/k_candidates_cpu.md"


def run_study(study: Study) -> dict[int, dict[str, float]]:
    """Fit every candidate K of ``study`` with the same seed; every criterion's score per candidate, with
    the seconds of the fit and how far its encoder features are from the first candidate's."""
    rows, reference = {}, None
    for n_clusters in study.candidates:
        start = time.perf_counter()
        estimator = study.fit(n_clusters)
        seconds = time.perf_counter() - start
        features = estimator.transform(study.X)
        reference = features if reference is None else reference
        rows[n_clusters] = {
            **scores(estimator, study.X, study.y, features),
            "seconds": seconds,
            "feature_change": float(np.abs(features - reference).max()),
        }
        print(
            f"{study.name}, K={n_clusters}: " + ", ".join(f"{k} {v:.4f}" for k, v in rows[n_clusters].items())
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.k_selection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a smoke test (printed, not written)")
    parser.add_argument(
        "--candidates", action="store_true", help="one fit per data set, the estimator choosing K"
    )
    parser.add_argument(
        "--output", help=f"markdown report (default: {RESULTS}, or {CANDIDATE_RESULTS}; none with --quick)"
    )
    args = parser.parse_args(argv)
    command = "python -m " + " ".join(
        ["benchmarks.k_selection", *(argv if argv is not None else sys.argv[1:])]
    )
    default = CANDIDATE_RESULTS if args.candidates else RESULTS
    output = args.output or (None if args.quick else default)
    start = time.perf_counter()
    chosen = studies(args.quick, candidates=args.candidates)
    if args.candidates:
        results = []
        for study in chosen:
            results.append((study, run_candidates(study)))
            text = candidates_report(results, command, machine(), time.perf_counter() - start)
            _write(output, text)
    else:
        results = [(study, run_study(study)) for study in chosen]
        text = report(results, command, machine(), time.perf_counter() - start, N_HEADS, SEED)
        _write(output, text)
    print("\n" + text)


def _write(output: str | None, text: str) -> None:
    """Write the report to ``output``, if any."""
    if output:
        with open(output, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
