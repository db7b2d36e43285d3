"""Pictures of a clustering with matplotlib (the optional ``plots`` extra): the cluster gallery, the
confusion matrix and the training curves.

May import :mod:`imc_cluster.metrics` and :mod:`imc_cluster.core`.
"""

from imc_cluster.pictures.confusion import plot_confusion_matrix
from imc_cluster.pictures.curves import plot_training_curves
from imc_cluster.pictures.gallery import plot_cluster_gallery

__all__ = ["plot_cluster_gallery", "plot_confusion_matrix", "plot_training_curves"]
