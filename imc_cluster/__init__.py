"""imc-cluster: deep image clustering with IMC-SwAV, as easy as k-means.

>>> from imc_cluster import IMCSwAVClustering
>>> est = IMCSwAVClustering(n_clusters=10)  # doctest: +SKIP
>>> labels = est.fit(X).predict(X_new)  # doctest: +SKIP
"""

from .callbacks import EarlyStopping, StopTraining, TensorBoard
from .config import ConfigurationWarning
from .estimator import IMCSwAVClustering
from .folder_prediction import predict_folder
from .imagefolder import iter_image_batches, load_image_folder
from .metrics import cluster_accuracy, evaluate_clustering, top_k_cluster_accuracy
from .plots import plot_cluster_gallery, plot_confusion_matrix, plot_training_curves

__version__ = "0.2.0"

__all__ = ["IMCSwAVClustering", "load_image_folder", "iter_image_batches", "predict_folder",
           "cluster_accuracy", "top_k_cluster_accuracy", "evaluate_clustering", "plot_cluster_gallery",
           "plot_confusion_matrix", "plot_training_curves", "EarlyStopping", "TensorBoard", "StopTraining",
           "ConfigurationWarning", "__version__"]
