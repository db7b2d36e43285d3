"""Prediction over a folder of image files with a fitted estimator: the table of clusters, the picture of
the most typical images, the summary.

May import :mod:`imc_cluster.estimator` and the layers below it.
"""
