"""What a training epoch reports, summed on the device as its steps run and read once at its end.

- The mean loss terms (:data:`LOSS_TERMS`): "loss" and "swav" over the steps, "mi" and "reg" (each the sum
  over the cluster heads) over the updates of the heads.
- Each head's mutual-information loss ("mi_heads", its mean over the updates of the heads), and the best head
  ("best_head"), the one whose loss is the lowest.
- Label-free measures of the best head's progress (:data:`PROGRESS_MEASURES`), from the logits of the large
  views that its updates computed: "confidence", the mean largest cluster probability; "agreement", the
  share of images whose large views all fall in the same cluster; "clusters_used", the clusters in which at
  least one large view of the epoch falls.

When the fit chooses among candidate numbers of clusters, "mi_heads", "best_head" and the progress measures
are lists, one entry per candidate K (in increasing order), each of that candidate's heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from imc_cluster.training.distributed import World

__all__ = ["LOSS_TERMS", "PROGRESS_MEASURES", "progress_counts", "candidate_progress_counts", "EpochTotals"]

#: names of the loss terms reported per epoch
LOSS_TERMS = ("loss", "swav", "mi", "reg")
#: names of the label-free progress measures reported per epoch
PROGRESS_MEASURES = ("confidence", "agreement", "clusters_used")
#: the sums of :func:`progress_counts` before the per-cluster counts
_SUMS = 3


def progress_counts(logits: torch.Tensor, n_large: int) -> torch.Tensor:
    """The sums behind the progress measures of one head update, for every head.

    Parameters
    ----------
    logits : Tensor (n_heads, n_views, batch, n_clusters)
        Logits of every head and view, the ``n_large`` large views first.
    n_large : int
        Number of large views.

    Returns
    -------
    counts : Tensor (n_heads, 3 + n_clusters), float32
        Per head: the sum of the large views' largest cluster probabilities, the images whose large views
        all have the cluster of the first, the images, and per cluster the large views whose argmax it is.
    """
    probs = F.softmax(logits[:, :n_large].detach().float(), dim=-1)  # (H, L, B, K)
    n_heads, _, batch, n_clusters = probs.shape
    largest, clusters = probs.max(dim=-1)  # (H, L, B)
    agreeing = (clusters == clusters[:, :1]).all(dim=1).sum(dim=-1, dtype=probs.dtype)  # (H,)
    clusters = clusters.flatten(1)
    per_cluster = probs.new_zeros(n_heads, n_clusters).scatter_add_(
        1, clusters, probs.new_ones(()).expand(clusters.shape)
    )  # a scatter, not a histogram: no wait for the device
    sums = torch.stack([largest.sum(dim=(1, 2)), agreeing, probs.new_full((n_heads,), batch)], dim=1)
    return torch.cat([sums, per_cluster], dim=1)


def candidate_progress_counts(logits: Sequence[torch.Tensor], n_large: int) -> torch.Tensor:
    """:func:`progress_counts` of the heads of every candidate K, ``(n_candidates, n_heads, 3 + max K)``: the
    per-cluster counts of the smaller Ks padded with zeros (clusters that no view falls in)."""
    counts = [progress_counts(group, n_large) for group in logits]
    width = max(count.shape[1] for count in counts)
    return torch.stack([F.pad(count, (0, width - count.shape[1])) for count in counts])


def _head_record(heads: list[float], progress: torch.Tensor) -> dict:
    """The record entries of one set of heads: their losses ``heads``, the best, and its measures from its
    row of ``progress`` ``(n_heads, 3 + K)``."""
    best = min(range(len(heads)), key=heads.__getitem__)
    largest, agreeing, images, *per_cluster = progress[best].tolist()
    return {
        "mi_heads": heads,
        "best_head": best,
        "confidence": largest / max(sum(per_cluster), 1.0),
        "agreement": agreeing / max(images, 1.0),
        "clusters_used": sum(count > 0 for count in per_cluster),
    }


class EpochTotals:
    """Running sums of the outputs of an epoch's steps, on the device.

    Parameters
    ----------
    n_heads : int
        Cluster heads of the network (of each candidate K).
    n_clusters : int or sequence of int
        Clusters of each head, or the candidate Ks (whose steps give their heads' terms per candidate:
        ``mi_heads`` ``(n_candidates, n_heads)`` and :func:`candidate_progress_counts`).
    device : torch.device
        Where the steps' outputs are.
    """

    def __init__(self, n_heads: int, n_clusters: int | Sequence[int], device: torch.device) -> None:
        self.terms = torch.zeros(len(LOSS_TERMS), device=device)
        self.counts = [0] * len(LOSS_TERMS)
        if isinstance(n_clusters, Sequence):
            self.candidates = len(n_clusters)
            self.heads = torch.zeros(self.candidates, n_heads, device=device)
            self.progress = torch.zeros(self.candidates, n_heads, _SUMS + max(n_clusters), device=device)
        else:
            self.candidates = None
            self.heads = torch.zeros(n_heads, device=device)
            self.progress = torch.zeros(n_heads, _SUMS + n_clusters, device=device)

    def add(self, step: dict[str, torch.Tensor]) -> torch.Tensor:
        """Add the outputs of a step (:meth:`~imc_cluster.training.trainer.Trainer.step`); returns its loss
        terms ordered as :data:`LOSS_TERMS`, 0 for those it lacks."""
        zero = step["loss"].new_zeros(())
        terms = torch.stack([step.get(name, zero) for name in LOSS_TERMS]).float()
        self.counts = [count + (name in step) for count, name in zip(self.counts, LOSS_TERMS)]
        self.terms += terms
        if "mi_heads" in step:
            self.heads += step["mi_heads"].float()
            self.progress += step["progress"]
        return terms

    def means(self) -> torch.Tensor:
        """The running means of the loss terms, a device tensor ordered as :data:`LOSS_TERMS`."""
        return self.terms / self.terms.new_tensor(self.counts).clamp_min(1)

    def reduce(self, world: World) -> None:
        """Every sum averaged over the ranks of ``world``, in one collective: the means and the measures are
        then those of the global batches."""
        sizes = [self.terms.numel(), self.heads.numel(), self.progress.numel()]
        flat = world.mean(torch.cat([self.terms, self.heads.flatten(), self.progress.flatten()]))
        terms, heads, progress = flat.split(sizes)
        self.terms, self.heads = terms, heads.view_as(self.heads)
        self.progress = progress.view_as(self.progress)

    def record(self) -> dict:
        """The epoch's record (see the module docstring), read from the device at once; with candidate Ks,
        the heads' entries are lists of one value per candidate."""
        n_terms = len(LOSS_TERMS)
        head_updates = max(self.counts[LOSS_TERMS.index("mi")], 1)
        flat = [self.means(), self.heads.flatten() / head_updates, self.progress.flatten()]
        values = torch.cat(flat).cpu()
        means, heads, progress = values.split([n_terms, self.heads.numel(), self.progress.numel()])
        record = dict(zip(LOSS_TERMS, means.tolist()))
        heads, progress = heads.view(self.heads.shape), progress.view(self.progress.shape)
        if self.candidates is None:
            return {**record, **_head_record(heads.tolist(), progress)}
        groups = [_head_record(group.tolist(), counts) for group, counts in zip(heads, progress)]
        return {**record, **{key: [group[key] for group in groups] for key in groups[0]}}
