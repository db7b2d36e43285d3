"""The study's markdown report: the K every criterion chooses per data set, how often that is the true K,
and every candidate's scores."""

from __future__ import annotations

from benchmarks.k_selection.data import Study
from benchmarks.k_selection.scoring import CRITERIA
from imc_cluster.criteria import select_n_clusters

Results = list[tuple[Study, dict[int, dict[str, float]]]]


def choices(rows: dict[int, dict[str, float]]) -> dict[str, int]:
    """The candidate K that every criterion scores highest (the smallest on a tie)."""
    return {name: select_n_clusters({k: row[name] for k, row in rows.items()}) for name in CRITERIA}


def _mark(chosen: int, true_k: int) -> str:
    """A chosen K, in bold when it is the true K and with a "~" when it is one off."""
    return f"**{chosen}**" if chosen == true_k else f"{chosen}~" if abs(chosen - true_k) == 1 else str(chosen)


def summary(results: Results) -> list[str]:
    """The table data set x criterion -> chosen K, and per criterion its hits and near misses."""
    lines = [
        "| true K | data set | candidates | " + " | ".join(CRITERIA) + " |",
        "|---|---|---|" + "---|" * len(CRITERIA),
    ]
    hits, near = dict.fromkeys(CRITERIA, 0), dict.fromkeys(CRITERIA, 0)
    for study, rows in results:
        chosen = choices(rows)
        for name, k in chosen.items():
            hits[name] += k == study.true_k
            near[name] += abs(k - study.true_k) == 1
        cells = " | ".join(_mark(chosen[name], study.true_k) for name in CRITERIA)
        span = f"{min(rows)}-{max(rows)}" if len(rows) == max(rows) - min(rows) + 1 else str(list(rows))
        lines.append(f"| {study.true_k} | {study.name} | {span} | {cells} |")
    tally = " | ".join(f"{hits[name]} ({near[name]})" for name in CRITERIA)
    lines.append(f"| | **true K chosen (one off)**, of {len(results)} | | {tally} |")
    top = max((hits[name], near[name]) for name in CRITERIA)
    leaders = ", ".join(f"`{name}`" for name in CRITERIA if (hits[name], near[name]) == top)
    return [*lines, "", f"Most true-K choices (then near misses): {leaders}, {top[0]} of {len(results)}."]


def study_table(study: Study, rows: dict[int, dict[str, float]]) -> list[str]:
    """Every candidate's scores under every criterion, with the reference ACC and ARI (which need labels)."""
    columns = [*CRITERIA, "acc", "ari", "seconds", "feature_change"]
    lines = [
        f"### {study.name} (true K = {study.true_k}, {study.config['max_epochs']} epochs)",
        "",
        "| K | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    chosen = choices(rows)
    for k, row in rows.items():
        cells = [f"**{row[n]:.4f}**" if chosen.get(n) == k else f"{row[n]:.4f}" for n in columns[:-2]]
        cells += [f"{row['seconds']:.1f}", f"{row['feature_change']:.2g}"]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def report(results: Results, command: str, machine: dict, seconds: float, n_heads: int, seed: int) -> str:
    """The whole report: what was run, the summary, each data set's scores and the machine."""
    lines = [
        "# Choosing the number of clusters K without labels",
        "",
        f"`{command}`: every candidate K fitted once (seed {seed}, {n_heads} cluster heads, the predicting",
        "one the head of lowest loss), each fit scored on its training data by every criterion of",
        "`imc_cluster.criteria`; a criterion chooses its highest-scoring candidate (the smallest on a tie).",
        "Chosen K in bold when true, with `~` when one off. Criteria (higher is better): `stability`, the",
        "mean pairwise ARI of the heads' clusterings; `view_agreement`, Cohen's kappa of the clusters of two",
        "augmented views; `normalized_information`, I(X; Y) / log K of `predict_proba`;",
        "`feature_silhouette`, the cosine silhouette of the clusters on the encoder features (2,000 samples",
        "at most); `balance`, the entropy of the cluster sizes / log K.",
        "",
        *summary(results),
        "",
        "## Every candidate's scores",
        "",
        "`acc` and `ari` (against the true classes) are for reference only: no criterion reads labels.",
        "`feature_change` is the largest difference of the encoder features from the first candidate's fit",
        "(0: the encoder does not depend on K).",
        "",
    ]
    for study, rows in results:
        lines += study_table(study, rows)
    lines += [
        "## Machine",
        "",
        f"{machine['cpu']}, {machine['cores']} cores shared with other jobs,",
        f"{machine['torch_threads']} torch thread(s), torch {machine['torch']}, Python {machine['python']},",
        f"no GPU; {machine['date']}.",
        f"The study took {seconds / 60:.1f} minutes.",
    ]
    return "\n".join(lines) + "\n"
