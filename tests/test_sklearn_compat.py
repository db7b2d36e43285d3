"""scikit-learn's common estimator checks on two small configurations."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from imc_cluster import IMCSwAVClustering

SMALL = dict(backbone_width=4, n_prototypes=10, projection_dim=8, head_hidden_dim=16, batch_size=16,
             max_epochs=15, warmup_updates=2, bn_recalibration_batches=2, random_state=0)

#: the MLP backbone on plain 2-D data
VECTORS = IMCSwAVClustering(**SMALL)
#: a ResNet reading every row as a one-pixel-high grey image
IMAGES = IMCSwAVClustering(image_shape=(1, -1), **SMALL)

#: checks waived for the image configuration, with the reason (the vector configuration waives none)
IMAGE_WAIVERS = {
    "check_clustering": (
        "expects ARI > 0.4 on 2-feature Gaussian blobs; read as 1x2-pixel images, crops and colour jitter "
        "(which average and rescale the two 'pixels') erase the only signal, so the image pipeline cannot "
        "cluster them. The same check passes with the MLP backbone, which is what 2-D data gets by default."
    ),
    "check_methods_subset_invariance": (
        "float32 convolutions give results that differ in the last bits with the batch size (oneDNN picks "
        "kernels per shape), up to ~1e-5 relative on near-zero features, beyond the check's rtol=1e-4 "
        "there; cluster labels agree. The MLP configuration passes it."
    ),
}


def expected_failures(estimator) -> dict[str, str]:
    return IMAGE_WAIVERS if estimator.image_shape is not None else {}


@parametrize_with_checks([VECTORS, IMAGES], expected_failed_checks=expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)
