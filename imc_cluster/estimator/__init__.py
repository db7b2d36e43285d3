"""The scikit-learn estimator :class:`IMCSwAVClustering`: its parameters and their checks, the fit that turns
them into views, a network and a schedule, callbacks, and the estimator's checkpoint sections.

May import the layers below it: training, inference, model, data, augmentation, checkpoints, metrics and core.
"""

from imc_cluster.estimator.estimator import IMCSwAVClustering

__all__ = ["IMCSwAVClustering"]
