"""imc-cluster: deep image clustering with IMC-SwAV, as easy as k-means.

>>> from imc_cluster import IMCSwAVClustering
>>> est = IMCSwAVClustering(n_clusters=10)  # doctest: +SKIP
>>> labels = est.fit(X).predict(X_new)  # doctest: +SKIP
"""

from imc_cluster.core import moved
from imc_cluster.core.version import __version__
from imc_cluster.data.arrays import AmbiguousImagesWarning
from imc_cluster.data.folders import iter_image_batches, load_image_folder
from imc_cluster.estimator.callbacks import EarlyStopping, StopTraining, TensorBoard
from imc_cluster.estimator.estimator import IMCSwAVClustering
from imc_cluster.estimator.params import ConfigurationWarning
from imc_cluster.metrics import cluster_accuracy, evaluate_clustering, top_k_cluster_accuracy
from imc_cluster.pictures.confusion import plot_confusion_matrix
from imc_cluster.pictures.curves import plot_training_curves
from imc_cluster.pictures.gallery import plot_cluster_gallery
from imc_cluster.prediction.folder import predict_folder

moved.install()

__all__ = [
    "IMCSwAVClustering",
    "load_image_folder",
    "iter_image_batches",
    "predict_folder",
    "cluster_accuracy",
    "top_k_cluster_accuracy",
    "evaluate_clustering",
    "plot_cluster_gallery",
    "plot_confusion_matrix",
    "plot_training_curves",
    "EarlyStopping",
    "TensorBoard",
    "StopTraining",
    "ConfigurationWarning",
    "AmbiguousImagesWarning",
    "__version__",
]
