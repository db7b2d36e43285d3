"""Per-view BatchNorm: every view normalised with its own batch statistics inside one network pass.

The published IMC-SwAV code runs the encoder, and the cluster head, once per view, so every BatchNorm
layer normalises the ``B`` samples of one view with that view's own batch statistics
(docs/method.md#per-view-batchnorm). Here all views of one crop size go through the network in a single pass,
laid out *image-major*: sample ``b * V + v`` is view ``v`` of image ``b``. A :class:`ViewBatchNorm1d` /
:class:`ViewBatchNorm2d` layer called with ``n_views = V`` in training mode then sees its input as ``B``
samples of ``V * C`` channels and normalises each (view, channel) pair on its own: the statistics of one view
never mix with another's. Its running statistics end up as the published sequence of ``V`` per-view updates
leaves them.

The view count travels as an explicit argument through :class:`~imc_cluster.model.views.ViewSequential` and
the residual blocks (:mod:`imc_cluster.model.networks`), never as global state, so it survives activation
checkpointing (whose recomputation gets the same argument) and ``torch.compile``. With ``n_views = 1``, and
always in evaluation mode, the layers are plain BatchNorm.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from imc_cluster.model.collectives import all_gather_with_grad
from imc_cluster.model.views import PerView

__all__ = ["ViewBatchNorm1d", "ViewBatchNorm2d", "synchronized_batch_norm"]


def _reshaped(y: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``y.view(shape)`` that autograd takes for a new tensor, not a view (as ``torch.matmul`` does for its
    reshaped results): the in-place ReLU and residual additions that follow a BatchNorm then run as on a
    plain BatchNorm's output, without view bookkeeping (which would copy whole activations backwards)."""
    return torch.ops.aten._unsafe_view(y, shape)


class _ViewBatchNorm(nn.modules.batchnorm._BatchNorm, PerView):
    """BatchNorm whose training forward can normalise each of ``n_views`` image-major views on its own."""

    #: while set (:func:`synchronized_batch_norm`), training statistics are those of the global batch
    process_group = None

    def forward(self, x: torch.Tensor, n_views: int = 1) -> torch.Tensor:
        """Normalise ``x``; in training with ``n_views > 1``, each view with its own batch statistics.

        Parameters
        ----------
        x : Tensor of shape (B * n_views, C, ...)
            Image-major samples: ``x[b * n_views + v]`` is view ``v`` of image ``b``.
        n_views : int, default=1
            Views per image. Ignored in evaluation mode (the running statistics serve every sample).
        """
        if not self.training or (n_views == 1 and self.process_group is None):
            return super().forward(x)
        self._check_input_dim(x)
        if x.shape[0] % n_views:
            raise ValueError(
                f"{type(self).__name__} got {x.shape[0]} samples, not a multiple of {n_views} views."
            )
        if self.process_group is not None:
            return self._synchronized(x, n_views)
        if x.is_contiguous():
            return self._native(x, n_views)
        return self._functional(x, n_views)

    def _native(self, x: torch.Tensor, n_views: int) -> torch.Tensor:
        """One fused batch_norm over ``(B, V * C, ...)``, a free view of a contiguous image-major input; its
        per-view statistics are collected in scratch buffers (momentum 1) and then folded."""
        channels = self.num_features
        scratch = [None, None]
        if self.track_running_stats:
            scratch = self.running_mean.new_zeros(2, n_views * channels).unbind()
        weight = None if self.weight is None else self.weight.repeat(n_views)
        bias = None if self.bias is None else self.bias.repeat(n_views)
        y = F.batch_norm(
            x.view(x.shape[0] // n_views, n_views * channels, *x.shape[2:]),
            *scratch,
            weight,
            bias,
            training=True,
            momentum=1.0,
            eps=self.eps,
        )
        if self.track_running_stats:
            self._fold_running_stats(scratch[0].view(n_views, channels), scratch[1].view(n_views, channels))
        return _reshaped(y, x.shape)

    def _functional(self, x: torch.Tensor, n_views: int) -> torch.Tensor:
        """The same normalisation for any memory layout (channels-last images), in float32."""
        views = _wide(x).unflatten(0, (-1, n_views))  # (B, V, C, ...)
        dims = (0, *range(3, views.dim()))
        var, mean = torch.var_mean(views, dim=dims, keepdim=True, correction=0)
        y = (views - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            shape = (self.num_features,) + (1,) * (views.dim() - 3)
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            count = views.numel() // (n_views * self.num_features)
            unbiased = var.detach() * (count / max(count - 1, 1))
            self._fold_running_stats(mean.detach().view(n_views, -1), unbiased.view(n_views, -1))
        return _reshaped(y.to(x.dtype), x.shape)

    def _synchronized(self, x: torch.Tensor, n_views: int) -> torch.Tensor:
        """Each view normalised with its statistics over the global batch of ``process_group``, whose members
        hold slices of any size (an empty one included): every member's count, mean and sum of squared
        deviations per (view, channel) are gathered, differentiably, and combined exactly (Chan et al.)."""
        views = _wide(x).unflatten(0, (-1, n_views))  # (B, V, C, ...)
        dims, spatial = (0, *range(3, views.dim())), (1,) * (views.dim() - 3)
        count = views.new_full((n_views, self.num_features), views.numel() / (n_views * self.num_features))
        mean = views.sum(dim=dims) / count.clamp_min(1)
        squares = (views - mean.view(n_views, -1, *spatial)).square().sum(dim=dims)
        gathered = all_gather_with_grad(torch.stack([count, mean, squares]), self.process_group)
        counts, means, squares = gathered.unbind(1)
        count = counts.sum(dim=0)
        mean = (counts * means).sum(dim=0) / count
        var = (squares.sum(dim=0) + (counts * (means - mean).square()).sum(dim=0)) / count
        shape = (n_views, -1, *spatial)
        y = (views - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.weight is not None:
            y = y * self.weight.view(-1, *spatial) + self.bias.view(-1, *spatial)
        if self.track_running_stats:
            self._fold_running_stats(mean.detach(), var.detach() * (count / (count - 1).clamp_min(1)))
        return _reshaped(y.to(x.dtype), x.shape)

    @torch.no_grad()
    def _fold_running_stats(self, means: torch.Tensor, variances: torch.Tensor) -> None:
        """Update the running statistics as ``V`` successive per-view updates would (``means`` and unbiased
        ``variances`` of shape ``(V, C)``, in view order)."""
        n_views = means.shape[0]
        means, variances = means.to(self.running_mean.dtype), variances.to(self.running_var.dtype)
        # the buffers through .data: autograd saves them with every training-mode batch_norm call (whose
        # backward never reads them), so a plain call earlier in the pass (a group of one view) must not see
        # them change
        running_mean, running_var = self.running_mean.data, self.running_var.data
        if self.momentum is None:  # cumulative average over every batch seen, as nn.BatchNorm does
            seen = self.num_batches_tracked.to(means.dtype)
            for running, batch in ((running_mean, means), (running_var, variances)):
                running.mul_(seen).add_(batch.sum(dim=0)).div_(seen + n_views)
        elif not 0.0 < self.momentum < 1.0:  # the updates one by one (momentum 0 or 1: no closed form below)
            for running, batch in ((running_mean, means), (running_var, variances)):
                for view in batch:
                    running.lerp_(view, self.momentum)
        else:  # r <- (1 - m) r + m s_v for v = 1..V, i.e. r (1 - m)^V + sum_v m (1 - m)^(V - v) s_v
            decay = 1.0 - self.momentum
            # the weights m (1 - m)^(V - v) = (1 - m)^(V - v + log(m) / log(1 - m)), in one kernel
            shift = math.log(self.momentum) / math.log(decay)
            weights = torch.logspace(
                n_views - 1 + shift, shift, n_views, base=decay, device=means.device, dtype=means.dtype
            )
            running_mean.addmv_(means.t(), weights, beta=decay**n_views)
            running_var.addmv_(variances.t(), weights, beta=decay**n_views)
        self.num_batches_tracked.data.add_(n_views)


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32, or float64 when it is float64."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


class ViewBatchNorm1d(_ViewBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that can normalise image-major views separately (see the module docstring)."""


class ViewBatchNorm2d(_ViewBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that can normalise image-major views separately (see the module docstring)."""


@contextlib.contextmanager
def synchronized_batch_norm(model: nn.Module, group):
    """Within the context, the training-mode BatchNorm layers of ``model`` normalise each view with its
    statistics over the global batch held by the members of ``group`` (a ``torch.distributed`` process
    group), gradients included: the distributed form of the per-view normalisation. Every member must run
    the same layers in the same order (forward and backward) while it holds."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    plain = [type(m).__name__ for m in norms if not isinstance(m, _ViewBatchNorm)]
    if plain:
        raise TypeError(f"synchronized_batch_norm needs imc_cluster's ViewBatchNorm layers, got {plain}.")
    for m in norms:
        m.process_group = group
    try:
        yield
    finally:
        for m in norms:
            del m.process_group  # back to the class default, None
