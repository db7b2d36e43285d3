"""The scikit-learn estimator: :class:`IMCSwAVClustering`, a facade over the package's modules.

``fit`` flows one way: the input encoder (:mod:`~imc_cluster.data.encoder`) turns ``X`` into a uint8 (or
float32) tensor on the training device; :mod:`~imc_cluster.estimator.components` turns the parameters into the
view generator, the network and the schedule; :mod:`~imc_cluster.training.trainer` runs the epochs. Inference
is in :mod:`~imc_cluster.inference.outputs`, and the checkpoint format in
:mod:`~imc_cluster.checkpoints.files`.
"""

from __future__ import annotations

import copy
import weakref

from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin

from imc_cluster.estimator import fitting
from imc_cluster.estimator.inference import InferenceMixin
from imc_cluster.estimator.params import PARAMETER_CONSTRAINTS
from imc_cluster.estimator.persistence import CheckpointMixin
from imc_cluster.training.trainer import DivergenceError

__all__ = ["IMCSwAVClustering"]

#: the estimators whose fit is running (a callback must not start another)
_FITTING: weakref.WeakSet = weakref.WeakSet()


class IMCSwAVClustering(
    InferenceMixin,
    CheckpointMixin,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    BaseEstimator,
):
    """Deep clustering by IMC-SwAV: SwAV self-labelling plus a mutual-information cluster head.

    A ResNet (or, for plain feature vectors, an MLP) encoder is trained with SwAV's swapped prediction
    of Sinkhorn-Knopp codes over prototypes, on multi-crop views of each image. In the same phase a
    cluster head on the detached encoder feature learns ``n_clusters`` clusters by maximising the mutual
    information between its output and the prototype assignments of every view. Defaults follow the
    published method (Ntelemis, Jin and Thomas, 2022).

    Parameters
    ----------
    n_clusters : int or sequence of int, default=10
        Number of clusters ``K``; or candidate Ks (at least two distinct ints >= 2, e.g. ``(5, 10, 20)``,
        ``range(5, 21)``) among which the fit chooses without labels. The heads of every candidate train
        together (``n_heads`` each: at least 2, which a sequence needs); after the last epoch each candidate
        is scored by the agreement between its heads' clusterings of the training data
        (:func:`~imc_cluster.criteria.stability`), the best scoring K (the smallest on a tie) becomes
        ``n_clusters_``, and the network keeps its heads alone: ``labels_``, ``predict_proba`` and the
        saved model are those of a fit of that K. Until then (in callbacks, or in checkpoints written
        after each epoch) the network predicts with the first candidate, and ``history_`` holds the heads'
        entries per candidate. A warm start of a finished fit with the same candidates continues the chosen
        K (the scores stay those of the choice); one of a checkpoint written during the fit continues all
        the candidates and chooses when it ends.
    backbone : str, default="auto"
        Encoder: "resnet18", "resnet34", "resnet50" or "mlp" trained from scratch ("auto" picks ResNet-18 for
        images and the MLP for plain feature vectors), or a library's network "torchvision:NAME",
        "timm:NAME" or "open_clip:NAME" (timm and open_clip are optional extras) without its classifier.
        A library's network sees images as its library prepares them: resized and centre-cropped to its
        input size, normalised by its statistics.
    weights : {None, "pretrained"} or path, default=None
        Weights of a library's network: None (random), "pretrained" (the library's published weights,
        downloaded and cached by the library on first use) or a local weights file in the library's format
        (for machines without network). Checkpoints hold the weights: loading needs no download.
    freeze_encoder : bool or "auto", default="auto"
        Keep a library's network as it is and train only the projection, prototypes and cluster head on its
        features ("auto": frozen when ``weights`` are given). The features of a fixed set of training views
        (the centre crop, ``n_large_crops`` and ``n_small_crops``) are computed once and cached on disk
        (see ``cache_dir``), so that epochs take seconds and another fit on the same images reuses them.
        Unfrozen, the whole network trains as the published method, from the pretrained start.
    image_shape : tuple of int, default=None
        Shape ``(H, W)`` or ``(H, W, C)`` of the images when ``X`` is 2-D with one flattened image per row
        (C-order flattening of ``(H, W, C)``). One entry may be -1 (inferred). Leave None for 3-D/4-D
        image arrays, Datasets and plain feature vectors.
    backbone_width : int, default=64
        Channels of the ResNet's first stage (stages have 1, 2, 4 and 8 times as many); the MLP's hidden
        width is 8 times this. Smaller values give smaller, faster networks.
    n_prototypes : int, default=1000
        Number of SwAV prototypes ``K'``.
    projection_dim : int, default=128
        Dimension of the projection that is scored against the prototypes.
    head_hidden_dim : int, default=1024
        Width of the cluster head's hidden layers.
    n_heads : int, default=1
        Cluster heads trained together on the same features, each from its own initialisation and on its
        own loss, in one batched computation (1 is the published method). After every epoch the head with
        the lowest mutual-information loss over it becomes ``best_head_``, the one that predicts. Candidate
        Ks (``n_clusters`` a sequence) need at least 2 heads each (e.g. ``n_heads=5``).
    n_large_crops, n_small_crops : int, default=2, 4
        Views per image. The large views give the Sinkhorn targets.
    large_crop_size, small_crop_size : int or (int, int), default=None
        Output sizes of the crops; None gives 0.875 and 0.5625 of the image side (28 and 18 on 32x32).
    large_crop_scale, small_crop_scale : (float, float), default=(0.2, 1.0), (0.08, 0.4)
        Range of crop area as a fraction of the image.
    flip_prob : float, default=0.5
        Probability of a horizontal flip per view (set 0 for data where mirroring changes the class).
    color_jitter : (float, float, float, float), default=(0.4, 0.4, 0.4, 0.1)
        Brightness, contrast, saturation and hue strength.
    color_jitter_prob : float, default=0.8
        Probability that a view is colour-jittered.
    grayscale_prob : float, default=0.25
        Probability that a view is turned grey.
    normalization : (sequence of float, sequence of float), default=None
        Per-channel ``(mean, std)`` of pixel values in [0, 1] with which images are normalised, one entry
        per channel (e.g. the published CIFAR-10 constants, which ``imc-cluster train --dataset c10`` uses).
        None computes them from the training images. Ignored for feature vectors, which are standardised.
    temperature : float, default=0.1
        Softmax temperature ``tau`` of the prototype assignments.
    sinkhorn_epsilon : float, default=0.05
        Entropic regularisation of Sinkhorn-Knopp.
    sinkhorn_iterations : int, default=3
        Sinkhorn-Knopp iterations.
    marginal_weight : float, default=4.0
        Weight ``b`` of the cluster-marginal entropy in the mutual-information loss.
    logit_penalty : float, default=0.01
        Weight ``a`` of the penalty on cluster logits larger than ``logit_threshold``.
    logit_threshold : float, default=5.0
        Logit magnitude above which the penalty applies.
    batch_size : int, default=256
        Images per optimiser update (capped at the number of samples).
    max_epochs : int, default=500
        Training epochs.
    learning_rate : float, default=5e-4
        Adam's learning rate after warm-up.
    betas : (float, float), default=(0.8, 0.999)
        Adam's betas.
    weight_decay : float, default=1e-5
        Adam's (L2) weight decay.
    warmup_updates : int, default=500
        Updates of linear learning-rate warm-up; the prototypes are frozen meanwhile.
    lr_milestones : tuple of int, default=(150, 300, 400)
        Epochs at which the learning rate is multiplied by ``lr_gamma``.
    lr_gamma : float, default=0.4
        Learning-rate decay factor.
    bn_recalibration_batches : int, default=50
        Batches of un-augmented training data on which the BatchNorm statistics are re-estimated before
        evaluation and after training; 0 keeps the running statistics of training.
    max_time : float, default=None
        Time budget of ``fit`` in seconds: the fit ends after the epoch during which it runs out, finished
        as after a last epoch; a warm start continues it. None trains ``max_epochs`` epochs.
    cache_dir : str or path, default=None
        Folder of the feature and decoding caches; None is the user's cache folder
        (:func:`imc_cluster.core.cache.cache_root`, which the ``IMC_CLUSTER_CACHE_DIR`` environment variable
        overrides). Nothing is ever written into a data folder.
    warm_start : bool, default=False
        When True and the estimator is fitted (or loaded from a checkpoint), ``fit`` continues training
        from where it stopped, with the optimiser, schedule and random state restored, until ``n_iter_``
        reaches ``max_epochs`` (raise ``max_epochs`` to train longer). The data must be shaped like
        the first fit's.
    checkpoint_path : str or path-like, default=None
        When given, a checkpoint (see :meth:`save`) is written there atomically after every epoch, so an
        interrupted fit resumes with :meth:`load` and ``warm_start=True``.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". On CUDA, training uses bf16 autocast (the
        Sinkhorn codes and losses stay in float32) and channels-last images; the uint8 data live on the GPU
        when they fit in half its free memory, else in pinned host memory.
    compile : bool, default=False
        Train through ``torch.compile`` (opt-in: the first epoch pays the compilation; pays off on GPUs
        for long runs).
    precision : {"auto", "bfloat16", "float32"}, default="auto"
        Arithmetic of the networks in training (bf16 autocast keeps float32 weights, and the Sinkhorn codes
        and losses stay in float32). "auto" is bf16 on CUDA and float32 on the CPU. "bfloat16" on a CPU
        with AVX512-BF16 or AMX halves the activation memory and nearly doubles the speed of ResNet
        training (python -m benchmarks.speed), but oneDNN's bf16 kernels can give non-finite gradients on tiny
        networks and images, so it is opt-in there. Inference runs in bf16 on CUDA (unless "float32")
        and in float32 on the CPU. A frozen encoder's features are computed in bf16 on CUDA and on CPUs
        with AVX512-BF16 or AMX unless "float32" (python -m benchmarks.pretrained measures the cost), in
        fit and in inference alike, and kept as float16 in the cache folder, found by image content; the
        networks that train on them (no convolutions) then train in bf16 too.
    activation_checkpointing : bool, default=False
        Keep only the input of the stem and of each residual block in training, and recompute them in the
        backward pass: ResNet activation memory shrinks several-fold for about a third more compute. For
        large batches on small machines.
    random_state : int, RandomState instance or None, default=None
        Seed of weight initialisation, shuffling and augmentation. Fit is deterministic on the CPU for
        a fixed seed.
    verbose : int, default=0
        0 prints nothing; 1 shows a progress bar with the running losses.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of every training sample.
    n_clusters_ : int
        The number of clusters of the fitted network: ``n_clusters``, or the K chosen among its candidates.
    k_scores_ : dict of int to float or None
        With candidate Ks, the score of each (mean pairwise adjusted Rand index between its heads'
        clusterings of the training data; higher is better; :func:`~imc_cluster.pictures.plot_k_scores`
        draws them); None for one K.
    n_iter_ : int
        Epochs run.
    history_ : list of dict
        One record per epoch: loss terms, each head's mutual-information loss ("mi_heads"), the best head,
        its label-free progress measures ("confidence", "agreement", "clusters_used"; see
        :mod:`imc_cluster.training.progress`), learning rate, seconds, images per second, and ACC/NMI/ARI
        with ``eval_set``. With candidate Ks, the heads' entries and ACC/NMI/ARI are lists, one value per
        candidate (of its best head).
    best_head_ : int
        The cluster head that predicts (``predict``, ``predict_proba``, ``score``, ``labels_``): the one
        with the lowest mutual-information loss over the last epoch (0 with one head).
    device_ : torch.device
        Device the model lives on.
    model_ : IMCSwAVNet
        The trained network.
    n_features_in_ : int
        Values per sample seen in fit.
    input_shape_ : tuple of int
        ``(C, H, W)`` of the images, or ``(n_features,)`` for vectors.
    training_state_ : dict
        Optimiser state, update and epoch counters, and random state: what ``warm_start`` resumes from.
    inputs_ : InputEncoder
        What the training data were (kind, shape, pixel range, normalisation or standardisation), and how
        every later ``X`` is encoded.
    architecture_ : dict
        The fitted network's architecture; inference and checkpoints use it, whatever the parameters say
        after ``fit`` (a warm start refuses parameters that change it).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from imc_cluster import IMCSwAVClustering
    >>> X, y = load_digits(return_X_y=True)
    >>> est = IMCSwAVClustering(n_clusters=10, image_shape=(8, 8), max_epochs=2, random_state=0)
    >>> labels = est.fit_predict(X)
    """

    _parameter_constraints: dict = PARAMETER_CONSTRAINTS

    def __init__(
        self,
        n_clusters: int = 10,
        *,
        backbone: str = "auto",
        image_shape: tuple[int, ...] | None = None,
        weights: str | None = None,
        freeze_encoder: bool | str = "auto",
        backbone_width: int = 64,
        n_prototypes: int = 1000,
        projection_dim: int = 128,
        head_hidden_dim: int = 1024,
        n_heads: int = 1,
        n_large_crops: int = 2,
        n_small_crops: int = 4,
        large_crop_size: int | tuple[int, int] | None = None,
        small_crop_size: int | tuple[int, int] | None = None,
        large_crop_scale: tuple[float, float] = (0.2, 1.0),
        small_crop_scale: tuple[float, float] = (0.08, 0.4),
        flip_prob: float = 0.5,
        color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        color_jitter_prob: float = 0.8,
        grayscale_prob: float = 0.25,
        normalization: tuple | None = None,
        temperature: float = 0.1,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        marginal_weight: float = 4.0,
        logit_penalty: float = 0.01,
        logit_threshold: float = 5.0,
        batch_size: int = 256,
        max_epochs: int = 500,
        learning_rate: float = 5e-4,
        betas: tuple[float, float] = (0.8, 0.999),
        weight_decay: float = 1e-5,
        warmup_updates: int = 500,
        lr_milestones: tuple[int, ...] = (150, 300, 400),
        lr_gamma: float = 0.4,
        bn_recalibration_batches: int = 50,
        max_time: float | None = None,
        cache_dir: str | None = None,
        warm_start: bool = False,
        checkpoint_path: str | None = None,
        device: str = "auto",
        compile: bool = False,
        precision: str = "auto",
        activation_checkpointing: bool = False,
        random_state=None,
        verbose: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.backbone = backbone
        self.image_shape = image_shape
        self.weights = weights
        self.freeze_encoder = freeze_encoder
        self.backbone_width = backbone_width
        self.n_prototypes = n_prototypes
        self.projection_dim = projection_dim
        self.head_hidden_dim = head_hidden_dim
        self.n_heads = n_heads
        self.n_large_crops = n_large_crops
        self.n_small_crops = n_small_crops
        self.large_crop_size = large_crop_size
        self.small_crop_size = small_crop_size
        self.large_crop_scale = large_crop_scale
        self.small_crop_scale = small_crop_scale
        self.flip_prob = flip_prob
        self.color_jitter = color_jitter
        self.color_jitter_prob = color_jitter_prob
        self.grayscale_prob = grayscale_prob
        self.normalization = normalization
        self.temperature = temperature
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.marginal_weight = marginal_weight
        self.logit_penalty = logit_penalty
        self.logit_threshold = logit_threshold
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.betas = betas
        self.weight_decay = weight_decay
        self.warmup_updates = warmup_updates
        self.lr_milestones = lr_milestones
        self.lr_gamma = lr_gamma
        self.bn_recalibration_batches = bn_recalibration_batches
        self.max_time = max_time
        self.cache_dir = cache_dir
        self.warm_start = warm_start
        self.checkpoint_path = checkpoint_path
        self.device = device
        self.compile = compile
        self.precision = precision
        self.activation_checkpointing = activation_checkpointing
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, eval_set=None, callbacks=None, head_mask=None):
        """Train the network and the cluster head on ``X``.

        Parameters
        ----------
        X : array-like, tensor, torch Dataset or DataLoader
            Images as ``(N, H, W, C)``, ``(N, C, H, W)`` or ``(N, H, W)`` arrays or tensors (uint8, uint16,
            bool or float), rows of flattened images with ``image_shape``, plain feature vectors ``(N, F)``,
            or a Dataset (map-style or iterable) or DataLoader of images or (image, target) pairs (PIL
            images or tensors; PIL modes "1", "L" and "LA" are read as one grey channel, 16-bit and float
            modes as grey over their range, others as RGB; grey images among RGB ones are repeated over
            three channels).
        y : Ignored
            Not used, present for API consistency.
        eval_set : tuple (X_val, y_val), default=None
            Labelled data on which ACC, NMI and ARI are reported after every epoch (in ``history_``). It
            changes nothing in the fit: weights and labels are those of a fit without it.
        callbacks : sequence of callable, default=None
            Each is called after every epoch as ``callback(estimator, record)`` with that epoch's
            ``history_`` record (after the checkpoint is written); one that raises ``StopTraining`` ends the
            fit, finished as after a last epoch. Optional methods ``on_fit_begin(estimator)`` and
            ``on_fit_end(estimator)`` run before and after the epochs. See
            :mod:`imc_cluster.estimator.callbacks`.
        head_mask : array-like of bool, shape (n_samples,), default=None
            Samples the cluster head trains on (all by default); the encoder and prototypes learn from
            every sample. For STL-10, the labelled images: as in the published code, each head update then
            runs on at least ``batch_size`` of them, gathered over consecutive batches.

        Returns
        -------
        self : IMCSwAVClustering
            The fitted estimator.

        Warns
        -----
        ConfigurationWarning
            When ``warmup_updates`` exceeds the run's updates or ``n_prototypes`` the samples, or when a
            tenth of the samples are left out of every epoch.

        Raises
        ------
        DivergenceError
            When a loss becomes NaN or infinite. The estimator is then left as it was after the last
            complete epoch (and as before ``fit`` when the first epoch diverged); the checkpoint, if any,
            still holds that last good epoch.
        """
        if self in _FITTING:
            raise RuntimeError(
                "fit was called while this estimator is fitting (from a callback?): a callback may predict, "
                "transform, score or save the estimator, not fit it."
            )
        previous = dict(self.__dict__)
        resume = bool(self.warm_start) and hasattr(self, "model_")
        # a warm start trains model_ in place: keep its weights to put back if the fit fails
        weights = copy.deepcopy(self.model_.state_dict()) if resume else None
        if not resume:
            self.__dict__.pop("feature_names_in_", None)  # of an earlier fit: only a named 2-D X sets them
        _FITTING.add(self)
        try:
            fitting.fit(self, X, eval_set, callbacks, head_mask, publish=self._set_fitted)
        except BaseException as error:
            # after a divergence the estimator stays as after its last complete epoch, when one completed
            if not isinstance(error, DivergenceError) or getattr(self, "n_iter_", 0) <= (
                previous.get("n_iter_", 0) if resume else 0
            ):
                self._restore(previous, weights)
            raise
        finally:
            _FITTING.discard(self)
        return self

    def _set_fitted(self, fitted: fitting.Fitted) -> None:
        """Take the attributes of a fit in progress or finished (the fit's ``publish``); ``n_clusters_`` and
        ``k_scores_`` of an earlier fit go while the fit chooses among candidate Ks."""
        attributes = fitted.attributes()
        for name in ("n_clusters_", "k_scores_"):
            if name not in attributes:
                self.__dict__.pop(name, None)
        self.__dict__.update(attributes)

    def _restore(self, previous: dict, weights: dict | None) -> None:
        """Put the estimator back as it was before a failed fit."""
        self.__dict__.clear()
        self.__dict__.update(previous)
        if weights is not None:
            self.model_.load_state_dict(weights)
            self.model_.to(self.device_).eval()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.input_tags.three_d_array = True
        return tags
