"""What an epoch reports: mean loss terms, each head's loss and the best head, and the label-free progress
measures of that head, against direct computations."""

import pytest
import torch

from imc_cluster.training.progress import (
    LOSS_TERMS,
    PROGRESS_MEASURES,
    EpochTotals,
    candidate_progress_counts,
    progress_counts,
)

#: logits (1 head, 3 views, 4 images, 3 clusters): the 2 large views put images 0..3 in clusters (0, 0),
#: (2, 2), (0, 0) and (2, 0); the small view, in cluster 1 for all, never counts
LOGITS = torch.tensor(
    [
        [
            [[3.0, 0.0, 0.0], [0.0, 1.0, 2.0], [1.0, 0.5, 0.0], [0.0, 0.0, 4.0]],
            [[2.0, 1.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0], [3.0, 0.0, 1.0]],
            [[0.0, 9.0, 0.0], [0.0, 9.0, 0.0], [0.0, 9.0, 0.0], [0.0, 9.0, 0.0]],
        ]
    ]
)


def direct_measures(logits: torch.Tensor, n_large: int = 2) -> dict:
    """The progress measures of one head's logits ``(V, B, K)``, computed directly."""
    probs = torch.softmax(logits[:n_large].double(), dim=-1)
    clusters = probs.argmax(dim=-1)
    return {
        "confidence": probs.max(dim=-1).values.mean().item(),
        "agreement": (clusters == clusters[0]).all(dim=0).double().mean().item(),
        "clusters_used": len(set(clusters.flatten().tolist())),
    }


def step(loss: float, heads: list[float] | None = None, logits: torch.Tensor = LOGITS) -> dict:
    """A step's outputs: its loss terms, with those of the heads when ``heads`` are given."""
    terms = {"loss": torch.tensor(loss), "swav": torch.tensor(loss / 2)}
    if heads is None:
        return terms
    mi_heads = torch.tensor(heads)
    return {
        **terms,
        "mi": mi_heads.sum(),
        "reg": torch.tensor(0.0),
        "mi_heads": mi_heads,
        "progress": progress_counts(logits, 2),
    }


def test_the_measures_of_a_known_batch():
    expected = direct_measures(LOGITS[0])
    assert expected["agreement"] == 0.75 and expected["clusters_used"] == 2
    totals = EpochTotals(1, 3, torch.device("cpu"))
    totals.add(step(1.0, [-2.0]))
    record = totals.record()
    assert {name: record[name] for name in PROGRESS_MEASURES} == pytest.approx(expected, rel=1e-6)
    assert record["mi_heads"] == [-2.0] and record["best_head"] == 0 and record["mi"] == -2.0


def test_the_measures_add_up_over_the_steps_of_the_best_head():
    second = torch.stack([LOGITS[0], -LOGITS[0]])  # head 1's clusters are others than head 0's
    totals = EpochTotals(2, 3, torch.device("cpu"))
    totals.add(step(1.0, [-2.0, -1.0], torch.cat([LOGITS, LOGITS])))
    totals.add(step(3.0))  # a step without a head update (the STL-10 bank filling up)
    totals.add(step(2.0, [-1.0, -4.0], second))
    record = totals.record()
    assert record["best_head"] == 1 and record["mi_heads"] == [-1.5, -2.5]  # means over the head updates
    assert record["loss"] == 2.0 and record["swav"] == 1.0 and record["mi"] == pytest.approx(-4.0)
    both = torch.cat([LOGITS[0, :2], -LOGITS[0, :2]], dim=1)  # head 1's large views, both batches
    assert {name: record[name] for name in PROGRESS_MEASURES} == pytest.approx(direct_measures(both))
    assert set(record) == {*LOSS_TERMS, "mi_heads", "best_head", *PROGRESS_MEASURES}


def test_an_epoch_without_head_updates_reports_zeros():
    totals = EpochTotals(3, 4, torch.device("cpu"))
    terms = totals.add(step(1.0))
    assert terms.tolist() == [1.0, 0.5, 0.0, 0.0]
    record = totals.record()
    assert record["mi_heads"] == [0.0] * 3 and record["best_head"] == 0
    assert [record[name] for name in PROGRESS_MEASURES] == [0.0, 0.0, 0]


def test_candidate_ks_report_each_candidates_heads():
    """Two candidates (K=3 and K=2) of 2 heads: every head entry is a list, one per candidate, each from
    that candidate's own heads (the smaller K's per-cluster counts padded)."""
    small = LOGITS[..., :2]  # K=2: the first two clusters of the same views
    both = [torch.cat([LOGITS, -LOGITS]), torch.cat([-small, small])]
    totals = EpochTotals(2, (3, 2), torch.device("cpu"))
    mi_heads = torch.tensor([[-1.0, -3.0], [-2.0, -0.5]])
    totals.add(
        {
            "loss": torch.tensor(1.0),
            "swav": torch.tensor(0.5),
            "mi": mi_heads.sum(),
            "reg": torch.tensor(0.0),
            "mi_heads": mi_heads,
            "progress": candidate_progress_counts(both, 2),
        }
    )
    record = totals.record()
    assert record["mi_heads"] == [[-1.0, -3.0], [-2.0, -0.5]] and record["best_head"] == [1, 0]
    first, second = direct_measures(-LOGITS[0]), direct_measures(-small[0])
    for name in PROGRESS_MEASURES:
        assert record[name] == pytest.approx([first[name], second[name]], rel=1e-6)
