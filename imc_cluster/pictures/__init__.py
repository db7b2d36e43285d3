"""Pictures of a clustering with matplotlib (the optional ``plots`` extra): the cluster gallery, the
confusion matrix, the training curves and the scores of candidate numbers of clusters.

May import :mod:`imc_cluster.metrics`, :mod:`imc_cluster.criteria` and :mod:`imc_cluster.core`.
"""

from imc_cluster.pictures.confusion import plot_confusion_matrix
from imc_cluster.pictures.curves import plot_training_curves
from imc_cluster.pictures.gallery import plot_cluster_gallery
from imc_cluster.pictures.kscores import plot_k_scores

__all__ = ["plot_cluster_gallery", "plot_confusion_matrix", "plot_training_curves", "plot_k_scores"]
