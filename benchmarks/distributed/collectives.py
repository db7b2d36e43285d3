"""The collectives of a distributed fit as Python sees them, by source, for ``python -m
benchmarks.distributed``.

:class:`CollectiveLog` wraps the collectives of ``torch.distributed`` (the module attributes that
``imc_cluster``, ``torch.distributed.nn.functional``'s autograd functions and ``DistributedDataParallel``'s
Python side look up at every call) and records each call: its function, the bytes of one rank's
contribution, and its source, read from the Python stack. DistributedDataParallel's gradient all-reduce runs
in its C++ reducer and never shows here; the benchmark adds it from the parameters.

The wire volume that a rank sends per collective (ring algorithms, as NCCL's bus bandwidth counts it) is
:func:`wire_bytes`; :func:`nccl_step` turns the collectives that gloo ran into those NCCL runs.
"""

from __future__ import annotations

import inspect
import sys
from collections import Counter
from dataclasses import dataclass

import torch
import torch.distributed as dist

#: the wrapped functions, with the argument that holds one rank's contribution (None: no tensor; an int:
#: that positional argument, for C++ bindings without a signature)
WRAPPED: dict[str, str | int | None] = {
    "all_reduce": "tensor",
    "all_gather": "tensor",
    "all_gather_into_tensor": "input_tensor",
    "broadcast": "tensor",
    "scatter": "tensor",
    "gather": "tensor",
    "reduce": "tensor",
    "reduce_scatter": "output",
    "reduce_scatter_tensor": "output",
    "all_to_all_single": "input",
    "_broadcast_coalesced": 1,
    "barrier": None,
    "broadcast_object_list": None,
    "all_gather_object": None,
}

#: the frames that name a collective's source, as (file ending, function, source); the innermost frame
#: that matches one decides
SOURCES = (
    ("imc_cluster/model/batchnorm.py", "_synchronized", "BatchNorm sync, forward"),
    ("imc_cluster/model/objectives.py", "sinkhorn", "Sinkhorn-Knopp"),
    ("imc_cluster/model/objectives.py", "mutual_information_loss", "mutual information, forward"),
    ("imc_cluster/model/objectives.py", "logit_penalty", "logit penalty (global batch size)"),
    ("imc_cluster/training/trainer.py", "_bank_size", "head-bank size"),
    ("torch/nn/parallel/distributed.py", "_sync_buffers", "DDP buffer broadcast"),
    ("torch/nn/parallel/distributed.py", "__init__", "DDP construction (parameters and buffers)"),
    ("imc_cluster/estimator/fitted.py", "recalibrate", "BatchNorm re-estimation (rank 0's buffers)"),
    ("imc_cluster/estimator/fitted.py", "initial_state", "start of fit (seed)"),
    ("imc_cluster/training/trainer.py", "step", "other, in a step"),
    (
        "imc_cluster/training/trainer.py",
        "_train_epoch",
        "epoch loop (loss means, divergence flag, labelled count)",
    ),
)
#: the backward passes of torch.distributed.nn.functional's autograd functions, by the class of their
#: ``ctx``: imc_cluster gathers only BatchNorm statistics and all-reduces only the mutual information's joint
BACKWARDS = {
    "_AllGatherBackward": "BatchNorm sync, backward",
    "_AllReduceBackward": "mutual information, backward",
}
_FUNCTIONAL = "torch/distributed/nn/functional.py"

#: sources of the collectives of every training step
PER_STEP = (
    "BatchNorm sync, forward",
    "BatchNorm sync, backward",
    "Sinkhorn-Knopp",
    "mutual information, forward",
    "mutual information, backward",
    "logit penalty (global batch size)",
    "head-bank size",
    "DDP buffer broadcast",
    "other, in a step",
)


@dataclass(frozen=True)
class Call:
    """One collective: where it came from, what it was and one rank's bytes."""

    phase: str
    source: str
    function: str
    nbytes: int


def source_of(frame) -> str:
    """The source of a collective called below ``frame`` (see :data:`SOURCES` and :data:`BACKWARDS`)."""
    while frame is not None:
        path, name = frame.f_code.co_filename.replace("\\", "/"), frame.f_code.co_name
        if path.endswith(_FUNCTIONAL) and name == "backward":
            kind = type(frame.f_locals.get("ctx")).__name__
            return BACKWARDS.get(kind, f"backward of {kind}")
        for ending, function, source in SOURCES:
            if path.endswith(ending) and name == function:
                return source
        frame = frame.f_back
    return "elsewhere"


def payload(function: str, original, args: tuple, kwargs: dict) -> int:
    """Bytes of one rank's contribution to a call of ``function``."""
    where = WRAPPED[function]
    if where is None:
        return 0
    if isinstance(where, int):
        value = args[where]
    else:
        value = inspect.signature(original).bind_partial(*args, **kwargs).arguments[where]
    tensors = value if isinstance(value, (list, tuple)) else [value]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


class CollectiveLog:
    """Within the context, every wrapped collective is recorded in :attr:`calls`, in :attr:`phase`."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.phase = ""
        self._originals: dict[str, object] = {}

    def __enter__(self) -> CollectiveLog:
        for function in WRAPPED:
            self._originals[function] = original = getattr(dist, function)
            setattr(dist, function, self._wrapper(function, original))
        return self

    def __exit__(self, *exc) -> None:
        for function, original in self._originals.items():
            setattr(dist, function, original)

    def _wrapper(self, function: str, original):
        def wrapper(*args, **kwargs):
            self.calls.append(
                Call(
                    self.phase,
                    source_of(sys._getframe(1)),
                    function,
                    payload(function, original, args, kwargs),
                )
            )
            return original(*args, **kwargs)

        return wrapper

    def table(self, phase: str) -> dict[tuple[str, str], tuple[int, int]]:
        """``(source, function) -> (calls, bytes)`` of one phase."""
        calls, nbytes = Counter(), Counter()
        for call in self.calls:
            if call.phase == phase:
                calls[call.source, call.function] += 1
                nbytes[call.source, call.function] += call.nbytes
        return {key: (calls[key], nbytes[key]) for key in calls}


def wire_bytes(function: str, nbytes: float, world: int) -> float:
    """Bytes one rank sends for a collective of ``nbytes`` per rank over ``world`` ranks (ring algorithms:
    all-reduce 2(N-1)/N of the tensor, all-gather and reduce-scatter N-1 times the per-rank part, a
    pipelined broadcast the tensor once)."""
    if function == "all_reduce":
        return 2 * (world - 1) / world * nbytes
    if function in ("all_gather", "all_gather_into_tensor", "reduce_scatter", "reduce_scatter_tensor"):
        return (world - 1) * nbytes
    return nbytes


def nccl_step(step: list[dict]) -> list[dict]:
    """The per-step collectives under NCCL from those gloo ran (rows ``source, function, calls, bytes``
    per step): the backward of a BatchNorm all-gather is one reduce-scatter of the gathered size per rank
    under NCCL, where gloo emulates it with one scatter per rank."""
    rows = [row for row in step if row["source"] != "BatchNorm sync, backward"]
    rows += [
        {**row, "source": "BatchNorm sync, backward", "function": "reduce_scatter"}
        for row in step
        if row["source"] == "BatchNorm sync, forward"
    ]
    return rows
