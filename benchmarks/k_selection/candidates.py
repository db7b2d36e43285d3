"""The study through the estimator's own choice of K: one fit per data set with every candidate at once.

``IMCSwAVClustering(n_clusters=[...], n_heads=N_HEADS)`` trains the heads of every candidate together and
keeps the candidate whose heads agree most (``k_scores_``, the stability criterion). The digits fits run
half the digits preset's schedule, three to fifteen times the separate-fit study's.
"""

from __future__ import annotations

import time

from benchmarks.k_selection.data import N_HEADS, SEED, Study
from imc_cluster import evaluate_clustering


def run_candidates(study: Study) -> dict:
    """One fit of ``study`` with all its candidate Ks: the K chosen, every candidate's score, the chosen
    clustering's ACC, NMI and ARI against the true classes, and the seconds of the fit."""
    start = time.perf_counter()
    estimator = study.fit(study.candidates)
    record = {
        "chosen": estimator.n_clusters_,
        "k_scores": dict(estimator.k_scores_),
        **evaluate_clustering(study.y, estimator.labels_),
        "seconds": time.perf_counter() - start,
    }
    scores = ", ".join(f"{k}: {v:.3f}" for k, v in record["k_scores"].items())
    print(f"{study.name}: chose K={record['chosen']} (true {study.true_k}); stability {scores}", flush=True)
    return record


def candidates_report(results: list[tuple[Study, dict]], command: str, machine: dict, seconds: float) -> str:
    """The markdown report: per data set the K chosen among its candidates and every candidate's score."""
    hits = sum(record["chosen"] == study.true_k for study, record in results)
    lines = [
        "# Choosing K through the estimator: every candidate in one fit",
        "",
        f"`{command}`: one fit per data set with `n_clusters` the candidates (seed {SEED},",
        f"`n_heads` {N_HEADS} per candidate); the estimator keeps the candidate whose heads agree most",
        "(`k_scores_`: the mean pairwise ARI of the heads' clusterings of the un-augmented training data,",
        "the stability criterion), the smallest on a tie. No labels are read; ACC, NMI and ARI of the",
        "chosen clustering are for reference.",
        "",
        "| true K | data set | epochs | chosen K | ACC | NMI | ARI | seconds | stability per candidate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for study, record in results:
        chosen = record["chosen"]
        mark = f"**{chosen}**" if chosen == study.true_k else str(chosen)
        scores = ", ".join(
            f"**{k}: {v:.3f}**" if k == chosen else f"{k}: {v:.3f}" for k, v in record["k_scores"].items()
        )
        metrics = " | ".join(f"{record[key]:.3f}" for key in ("acc", "nmi", "ari"))
        lines.append(
            f"| {study.true_k} | {study.name} | {study.config['max_epochs']} | {mark} | {metrics} | "
            f"{record['seconds']:.0f} | {scores} |"
        )
    lines += [
        "",
        f"True K chosen on {hits} of {len(results)} data sets.",
        "",
        "## Machine",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} torch thread(s), torch",
        f"{machine['torch']}, Python {machine['python']}, no GPU; {machine['date']}.",
        f"The study took {seconds / 60:.1f} minutes.",
    ]
    return "\n".join(lines) + "\n"
