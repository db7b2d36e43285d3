"""imc-cluster: deep image clustering with IMC-SwAV, as easy as k-means.

>>> from imc_cluster import IMCSwAVClustering
>>> est = IMCSwAVClustering(n_clusters=10)  # doctest: +SKIP
>>> labels = est.fit(X).predict(X_new)  # doctest: +SKIP

The names below are imported on first use (PEP 562), so ``import imc_cluster`` (and the command line's
``--help``) loads neither torch nor scikit-learn.
"""

import importlib
import importlib.util

from imc_cluster.core import moved
from imc_cluster.core.version import __version__

#: the module of every public name, in reading order
_HOMES = {
    "IMCSwAVClustering": "imc_cluster.estimator.estimator",
    "load_image_folder": "imc_cluster.data.folders",
    "iter_image_batches": "imc_cluster.data.folders",
    "predict_folder": "imc_cluster.prediction.folder",
    "cluster_accuracy": "imc_cluster.metrics",
    "top_k_cluster_accuracy": "imc_cluster.metrics",
    "evaluate_clustering": "imc_cluster.metrics",
    "plot_cluster_gallery": "imc_cluster.pictures.gallery",
    "plot_confusion_matrix": "imc_cluster.pictures.confusion",
    "plot_training_curves": "imc_cluster.pictures.curves",
    "plot_k_scores": "imc_cluster.pictures.kscores",
    "EarlyStopping": "imc_cluster.estimator.callbacks",
    "TensorBoard": "imc_cluster.estimator.callbacks",
    "StopTraining": "imc_cluster.estimator.callbacks",
    "ConfigurationWarning": "imc_cluster.estimator.params",
    "AmbiguousImagesWarning": "imc_cluster.data.arrays",
}

moved.install()

__all__ = [*_HOMES, "__version__"]


def __getattr__(name: str):
    """A public name, imported from its module on first use (and kept); or a subpackage or module, which
    ``import imc_cluster`` no longer imports itself."""
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    if importlib.util.find_spec(f"{__name__}.{name}") is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
