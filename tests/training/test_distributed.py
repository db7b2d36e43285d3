"""Training over several processes, on the CPU with gloo.

A distributed training step equals the single-process one: 2 ranks with B/2 images each give the loss terms
and the (all-reduced) gradients of 1 process with B images, on the same views and weights, and the per-view
BatchNorm statistics of the global batch. Distributed fits end to end: the Python API inside a process group
of 2 ranks (same model and labels on both, rank 0 alone writes, an exact resume), the command line under
torchrun (with resume), and a failing rank that ends the whole job rather than hanging it.

The ranks that ``torch.multiprocessing`` spawns (the ``spawn`` fixture) import this module by its name.
"""

import dataclasses
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from imc_cluster import IMCSwAVClustering, StopTraining
from imc_cluster.model.build import build_network
from imc_cluster.training.distributed import World, current_world
from imc_cluster.training.trainer import Trainer, TrainingConfig

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ one training step over two ranks


BATCH = 8


WORLD = 2


ARCHITECTURE = dict(
    backbone="resnet18",
    in_size=3,
    width=4,
    stem_pool=False,
    n_clusters=3,
    n_prototypes=6,
    projection_dim=8,
    head_hidden_dim=16,
)


LABELLED = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.bool)


def global_views(dtype=torch.float64) -> list[torch.Tensor]:
    """View-major groups of the global batch: 2 large views of 16x16 and 3 small ones of 8x8 per image."""
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(2 * BATCH, 3, 16, 16, generator=generator) * 2 + 0.5).to(dtype),
        torch.randn(3 * BATCH, 3, 8, 8, generator=generator).to(dtype),
    ]


def rank_views(views: list[torch.Tensor], rank: int) -> list[torch.Tensor]:
    """The views of this rank's images (rows ``rank * B/2 ...`` of the batch) in every group."""
    share = BATCH // WORLD
    return [
        group.unflatten(0, (-1, BATCH))[:, rank * share : (rank + 1) * share].flatten(0, 1) for group in views
    ]


def trainer(settings: dict, world=None, dtype=torch.float64, n_heads: int = 1) -> Trainer:
    """A trainer of the tiny network with ``n_heads`` cluster heads and the training ``settings`` (the
    published ones), batch B and no warm-up."""
    model = build_network({**ARCHITECTURE, "n_heads": n_heads}, seed=3).to(dtype)
    config = TrainingConfig(**{**settings, "batch_size": BATCH, "warmup_updates": 0})
    return Trainer(model, augment=None, config=config, generator=torch.Generator(), world=world)


def gradients_and_terms(run: Trainer, views, batch_size: int, head_mask=None):
    run.model.train()
    if head_mask is not None:
        run.bank_target = 4  # the bank is full (4 labelled images over the ranks) at the first batch
    terms = run.backward(views, batch_size, head_mask)
    grads = {name: p.grad.clone() for name, p in run.model.named_parameters() if p.grad is not None}
    stats = {name: b.clone() for name, b in run.model.named_buffers()}
    return {k: v.detach().double().flatten().tolist() for k, v in terms.items()}, grads, stats


#: the cases, each run by the same two processes: (head bank, dtype, tolerance, cluster heads); float64
#: shows the equality itself; in float32 both sides round differently (the single process is as far from
#: its own float64 gradients, about 1e-5 of their scale), so the float32 cases are checked to 1e-4
CASES = [
    (banked, dtype, tolerance, 1)
    for banked in (False, True)
    for dtype, tolerance in ((torch.float64, 1e-5), (torch.float32, 1e-4))
] + [(banked, torch.float64, 1e-5, 3) for banked in (False, True)]


def worker(rank: int, port: int, settings: dict, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        share = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        for case, (banked, dtype, _, n_heads) in enumerate(CASES):
            mask = LABELLED[share] if banked else None
            run = trainer(settings, current_world(), dtype, n_heads)
            views = rank_views(global_views(dtype), rank)
            results[rank, case] = gradients_and_terms(run, views, BATCH // WORLD, mask)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(training_settings, spawn) -> dict:
    """What the two ranks computed, by (rank, case)."""
    with mp.Manager() as manager:
        results = manager.dict()
        spawn(worker, (free_port(), training_settings, results), nprocs=WORLD)
        return dict(results)


def assert_equal(actual: torch.Tensor, expected: torch.Tensor, name: str, tolerance: float) -> None:
    """Equal to ``tolerance`` of the tensor's scale (a gradient that is zero in exact arithmetic, such as
    that of a bias before a BatchNorm, to ``tolerance`` in absolute terms)."""
    error = (actual.double() - expected.double()).abs().max().item()
    assert error <= tolerance * max(expected.abs().max().item(), 1e-2), f"{name}: off by {error:.3g}"


@pytest.mark.parametrize(
    "case",
    range(len(CASES)),
    ids=[f"{'head-bank' if b else 'every-image'}-{str(d)[6:]}-{h}-heads" for b, d, _, h in CASES],
)
def test_two_ranks_give_the_step_of_one_process(ranks, case, training_settings):
    banked, dtype, tolerance, n_heads = CASES[case]
    ranks = [ranks[rank, case] for rank in range(WORLD)]
    terms, grads, stats = gradients_and_terms(
        trainer(training_settings, dtype=dtype, n_heads=n_heads),
        global_views(dtype),
        BATCH,
        LABELLED if banked else None,
    )
    assert set(ranks[0][0]) == set(terms) == {"loss", "swav", "mi", "reg", "mi_heads", "progress"}
    assert len(terms["mi_heads"]) == n_heads
    for name, value in terms.items():
        # each rank's term is its share: their mean is the global term; progress counts add up
        shares = [np.asarray(ranks[rank][0][name]) for rank in range(WORLD)]
        combined = sum(shares) if name == "progress" else sum(shares) / WORLD
        assert combined == pytest.approx(np.asarray(value), rel=tolerance, abs=1e-6)
    assert set(ranks[0][1]) == set(ranks[1][1]) == set(grads)
    for name, grad in grads.items():
        for rank in range(WORLD):  # DistributedDataParallel leaves the same averaged gradient on every rank
            assert_equal(ranks[rank][1][name], grad, name, tolerance)
    for name, buffer in stats.items():  # running statistics of the global batch, per view
        for rank in range(WORLD):
            assert_equal(ranks[rank][2][name], buffer, name, tolerance)


def test_every_rank_takes_an_equal_slice_of_one_shared_order():
    worlds = [World(group=None, rank=rank, size=4) for rank in range(4)]
    orders = [world.epoch_order(50, seed=7, epoch=3, device=torch.device("cpu")) for world in worlds]
    assert all(torch.equal(order, orders[0]) for order in orders)
    assert sorted(orders[0].tolist()) == list(range(50))
    assert not torch.equal(orders[0], worlds[0].epoch_order(50, seed=7, epoch=4, device=torch.device("cpu")))
    slices = [world.slice_of(32) for world in worlds]
    assert [(s.start, s.stop) for s in slices] == [(0, 8), (8, 16), (16, 24), (24, 32)]
    seeds = {world.augmentation_seed(7, 3) for world in worlds}
    assert len(seeds) == 4  # every rank its own augmentation stream
    assert worlds[1].augmentation_seed(7, 3) == World(None, 1, 2).augmentation_seed(7, 3)  # per epoch, rank


@pytest.mark.parametrize("batch_size", [30, 6, 33])
def test_a_global_batch_that_the_ranks_cannot_share_equally_is_refused(batch_size):
    with pytest.raises(ValueError, match=rf"batch_size={batch_size} .* multiple of the 4 processes"):
        World(group=None, rank=0, size=4).slice_of(batch_size)


def test_one_process_is_not_a_distributed_fit():
    assert current_world() is None  # no process group: the plain single-process training


@pytest.mark.parametrize("n_samples, expected", [(65, 64), (64, 64), (33, 32), (3, 2), (2, 2)])
def test_a_batch_larger_than_the_data_is_capped_at_a_multiple_of_the_ranks(
    n_samples, expected, training_settings
):
    """batch_size 1000 over n_samples: the global batch is the most samples the 2 ranks share equally."""
    run = trainer(training_settings, World(group=None, rank=0, size=2))
    run.config = dataclasses.replace(run.config, batch_size=1000)
    assert run.batch_size(n_samples) == expected and run.steps_per_epoch(n_samples) == 1


def test_fewer_samples_than_ranks_is_refused(training_settings):
    run = trainer(training_settings, World(group=None, rank=0, size=4))
    run.config = dataclasses.replace(run.config, batch_size=8)
    with pytest.raises(ValueError, match="3 samples cannot be shared by 4 processes"):
        run.batch_size(3)


# ------------------------------------------------------------------ distributed fits


REPO = Path(__file__).resolve().parents[2]


#: a tiny estimator; batch_size is the global batch, 16 images on each of the 2 ranks
PARAMS = dict(
    n_clusters=3,
    backbone_width=4,
    n_prototypes=10,
    projection_dim=8,
    head_hidden_dim=16,
    batch_size=32,
    warmup_updates=2,
    bn_recalibration_batches=2,
    random_state=0,
    device="auto",
)


TINY_FLAGS = shlex.split(
    "--dataset digits --limit_train 96 --limit_test 64 --backbone_width 4 --prototypes 10 --project_dim 8 "
    "--warmup 2 --batch_size 32 --quiet"
)


def images() -> np.ndarray:
    """100 random 12x12 RGB images in three brightness classes (100 = 3 global batches + 4 left out)."""
    rng = np.random.default_rng(0)
    classes = np.arange(100) % 3
    return (rng.integers(0, 80, size=(100, 12, 12, 3)) + 80 * classes[:, None, None, None]).astype(np.uint8)


def weights(estimator: IMCSwAVClustering) -> dict[str, np.ndarray]:
    return {name: value.numpy().copy() for name, value in estimator.model_.state_dict().items()}


def stop_after_the_first_epoch(estimator, record) -> None:
    raise StopTraining


def fits(rank: int, port: int, folder: str, results) -> None:
    """On each rank: 2 epochs straight; 1 epoch into a checkpoint, then resumed from it to 2 epochs; 3
    epochs that a callback (which runs on rank 0) stops after the first."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        straight = IMCSwAVClustering(**PARAMS, max_epochs=2, checkpoint_path=f"{folder}/straight.cpt").fit(
            images()
        )
        IMCSwAVClustering(**PARAMS, max_epochs=1, checkpoint_path=f"{folder}/first.cpt").fit(images())
        resumed = IMCSwAVClustering.load(f"{folder}/first.cpt")
        resumed.set_params(max_epochs=2, warm_start=True, checkpoint_path=None).fit(images())
        stopped = IMCSwAVClustering(**PARAMS, max_epochs=3).fit(
            images(), callbacks=[stop_after_the_first_epoch]
        )
        results[rank] = dict(
            labels=straight.labels_,
            weights=weights(straight),
            history=straight.history_,
            resumed_weights=weights(resumed),
            resumed_labels=resumed.labels_,
            resumed_epochs=resumed.n_iter_,
            stopped_epochs=stopped.n_iter_,
            stopped_labels=stopped.labels_,
        )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def fitted_ranks(tmp_path_factory, spawn) -> tuple[dict, Path]:
    """What the fits of the two ranks gave, by rank, and the folder of their checkpoints."""
    folder = tmp_path_factory.mktemp("ddp")
    with mp.Manager() as manager:
        results = manager.dict()
        spawn(fits, (free_port(), str(folder), results), nprocs=2)
        return dict(results), folder


def test_every_rank_ends_with_the_same_model_and_labels_of_every_sample(fitted_ranks):
    results, _ = fitted_ranks
    zero, one = results[0], results[1]
    assert zero["labels"].shape == (100,) and np.array_equal(zero["labels"], one["labels"])
    for name, value in zero["weights"].items():
        np.testing.assert_array_equal(value, one["weights"][name], err_msg=name)
    for record_zero, record_one in zip(zero["history"], one["history"]):  # the loss terms of the global batch
        for term in ("loss", "swav", "mi", "reg"):
            assert record_zero[term] == pytest.approx(record_one[term], rel=1e-6)
    assert [record["epoch"] for record in zero["history"]] == [1, 2]
    # 3 updates of 32 images per epoch: 16 on each rank
    assert [record["updates"] for record in zero["history"]] == [3, 6]


def test_rank_zero_writes_the_checkpoint_that_every_rank_holds(fitted_ranks):
    results, folder = fitted_ranks
    loaded = IMCSwAVClustering.load(folder / "straight.cpt", device="cpu")
    assert loaded.n_iter_ == 2
    for name, value in weights(loaded).items():
        np.testing.assert_array_equal(value, results[0]["weights"][name], err_msg=name)
    np.testing.assert_array_equal(loaded.predict(images()), results[1]["labels"])


def test_a_resumed_distributed_fit_continues_exactly(fitted_ranks):
    results, _ = fitted_ranks
    for rank in (0, 1):
        assert results[rank]["resumed_epochs"] == 2
        np.testing.assert_array_equal(results[rank]["resumed_labels"], results[rank]["labels"])
        for name, value in results[rank]["weights"].items():
            np.testing.assert_array_equal(results[rank]["resumed_weights"][name], value, err_msg=name)


def test_a_stop_asked_on_rank_zero_ends_the_fit_on_every_rank(fitted_ranks):
    results, _ = fitted_ranks
    assert results[0]["stopped_epochs"] == results[1]["stopped_epochs"] == 1
    np.testing.assert_array_equal(results[0]["stopped_labels"], results[1]["stopped_labels"])


def test_a_distributed_fit_differs_from_one_process_only_by_its_random_streams(fitted_ranks):
    """The same seed in one process gives another model (each rank augments with its own stream), but one of
    the same quality on these easy classes: distribution is not a different method."""
    results, _ = fitted_ranks
    single = IMCSwAVClustering(**{**PARAMS, "device": "cpu"}, max_epochs=2).fit(images())
    assert not np.array_equal(
        weights(single)["prototypes.weight"], results[0]["weights"]["prototypes.weight"]
    )
    assert single.history_[0]["loss"] == pytest.approx(results[0]["history"][0]["loss"], rel=0.2)


# ------------------------------------------------------------------ candidate Ks in a distributed fit

#: candidate Ks: two heads for each of 2 and 3
CANDIDATES = dict(n_clusters=(2, 3), n_heads=2)
#: the samples the heads learn from (the head bank, whose steps leave the heads out): two of every three
MASK = np.arange(100) % 3 != 0


class _KeepFirstEpoch:
    """Copies the checkpoint of the first epoch aside (a callback: on rank 0)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __call__(self, estimator, record) -> None:
        if record["epoch"] == 1:
            shutil.copy(f"{self.folder}/straight.cpt", f"{self.folder}/first.cpt")


def candidate_fits(rank: int, port: int, folder: str, results) -> None:
    """On each rank: 2 epochs of candidate Ks with a head mask, whose checkpoint of the first epoch is kept;
    that checkpoint resumed to 2 epochs."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        params = {**PARAMS, **CANDIDATES, "max_epochs": 2}
        straight = IMCSwAVClustering(**params, checkpoint_path=f"{folder}/straight.cpt")
        straight.fit(images(), head_mask=MASK, callbacks=[_KeepFirstEpoch(folder)])
        resumed = IMCSwAVClustering.load(f"{folder}/first.cpt")
        assert resumed.architecture_["n_clusters"] == [2, 3]  # every candidate, before the choice
        resumed.set_params(max_epochs=2, warm_start=True).fit(images(), head_mask=MASK)
        results[rank] = {
            name: (est.n_clusters_, est.k_scores_, est.labels_, est.predict_proba(images()))
            for name, est in (("straight", straight), ("resumed", resumed))
        }
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def candidate_ranks(tmp_path_factory, spawn) -> dict:
    folder = tmp_path_factory.mktemp("ddp_candidates")
    with mp.Manager() as manager:
        results = manager.dict()
        spawn(candidate_fits, (free_port(), str(folder), results), nprocs=2)
        return dict(results)


def test_every_rank_chooses_the_same_k_and_model(candidate_ranks):
    zero, one = candidate_ranks[0]["straight"], candidate_ranks[1]["straight"]
    assert zero[0] in (2, 3) and sorted(zero[1]) == [2, 3]
    assert zero[0] == one[0] and zero[1] == one[1]
    assert zero[2].shape == (100,) and np.array_equal(zero[2], one[2])
    np.testing.assert_array_equal(zero[3], one[3])
    assert zero[3].shape == (100, zero[0])


def test_a_resumed_candidate_fit_ends_as_the_straight_one(candidate_ranks):
    for rank in (0, 1):
        straight, resumed = candidate_ranks[rank]["straight"], candidate_ranks[rank]["resumed"]
        assert resumed[0] == straight[0] and resumed[1] == straight[1]
        np.testing.assert_array_equal(resumed[3], straight[3])


def torchrun(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port",
        str(free_port()),
        "-m",
        "imc_cluster",
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_torchrun_trains_and_resumes_from_the_command_line(tmp_path):
    first = torchrun(["train", *TINY_FLAGS, "--epochs", "1", "--output_dir", "run"], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    epoch_lines = [line for line in first.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 1 and epoch_lines[0].startswith("epoch 1/1")  # rank 0 alone reports
    assert first.stdout.count("checkpoint: run/model.cpt") == 1
    second = torchrun(
        ["train", *TINY_FLAGS, "--epochs", "2", "--output_dir", "run", "--cpt_load_path", "run/model.cpt"],
        tmp_path,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("resuming run/model.cpt at epoch 1 of 2") == 1
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in history] == [1, 2]
    assert IMCSwAVClustering.load(tmp_path / "run" / "model.cpt", device="cpu").n_iter_ == 2


def test_a_bad_flag_under_torchrun_ends_every_rank_with_one_line(tmp_path):
    result = torchrun(["train", *TINY_FLAGS, "--epochs", "1", "--dev", "0"], tmp_path)
    assert result.returncode != 0
    # each rank that gets to report before torchrun stops it (the first failure ends the others) says why
    lines = [line for line in result.stderr.splitlines() if line.startswith("imc-cluster: ")]
    assert 1 <= len(lines) <= 2 and len({line[:20] for line in lines}) == len(lines)
    assert all(line[:20] in ("imc-cluster: rank 0:", "imc-cluster: rank 1:") for line in lines)
    assert all("--dev 0 under torchrun" in line for line in lines)


FAILING_RANK = textwrap.dedent("""
    import sys, numpy as np, torch.distributed as dist
    from imc_cluster import IMCSwAVClustering
    rank = int(sys.argv[1])
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[2], rank=rank, world_size=2)
    def fail_on_rank_zero(estimator, record):
        raise RuntimeError("the callback of rank 0 failed")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, size=(64, 12, 12, 3)).astype(np.uint8)
    IMCSwAVClustering(n_clusters=3, backbone_width=4, n_prototypes=10, projection_dim=8, head_hidden_dim=16,
                      batch_size=32, max_epochs=5, warmup_updates=2, random_state=0).fit(
                      X, callbacks=[fail_on_rank_zero])
""")


def test_a_failing_rank_ends_the_other_one_instead_of_hanging_it():
    port = str(free_port())
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", FAILING_RANK, str(rank), port],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for rank in (0, 1)
    ]
    outputs = [process.communicate(timeout=240) for process in processes]  # a hang fails here
    assert [process.returncode for process in processes] != [0, 0]
    assert processes[0].returncode != 0 and "the callback of rank 0 failed" in outputs[0][1]
    # rank 1 waited in a collective for rank 0, which left: it fails with gloo's error, it does not hang
    assert processes[1].returncode != 0
    assert "Error" in outputs[1][1]
