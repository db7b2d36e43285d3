"""A distributed training step equals the single-process one: 2 gloo ranks with B/2 images each give the
loss terms and the (all-reduced) gradients of 1 process with B images, on the same views and weights;
and the per-view BatchNorm statistics of the global batch."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from imc_cluster.config import build_network
from imc_cluster.distributed import World, current_world
from imc_cluster.training import Trainer, TrainingConfig

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

BATCH = 8
WORLD = 2
ARCHITECTURE = dict(backbone="resnet18", in_size=3, width=4, stem_pool=False, n_clusters=3, n_prototypes=6,
                    projection_dim=8, head_hidden_dim=16)
# the labelled images of the head-bank case (unequal between the ranks: 3 on rank 0, 1 on rank 1)
LABELLED = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.bool)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def global_views(dtype=torch.float64) -> list[torch.Tensor]:
    """View-major groups of the global batch: 2 large views of 16x16 and 3 small ones of 8x8 per image."""
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(2 * BATCH, 3, 16, 16, generator=generator) * 2 + 0.5).to(dtype),
            torch.randn(3 * BATCH, 3, 8, 8, generator=generator).to(dtype)]


def rank_views(views: list[torch.Tensor], rank: int) -> list[torch.Tensor]:
    """The views of this rank's images (rows ``rank * B/2 ...`` of the batch) in every group."""
    share = BATCH // WORLD
    return [group.unflatten(0, (-1, BATCH))[:, rank * share:(rank + 1) * share].flatten(0, 1)
            for group in views]


def trainer(world=None, dtype=torch.float64) -> Trainer:
    model = build_network(ARCHITECTURE, seed=3).to(dtype)
    config = TrainingConfig(batch_size=BATCH, n_large_views=2, warmup_updates=0)
    return Trainer(model, augment=None, config=config, generator=torch.Generator(), world=world)


def gradients_and_terms(run: Trainer, views, batch_size: int, head_mask=None):
    run.model.train()
    if head_mask is not None:
        run.bank_target = 4  # the bank is full (4 labelled images over the ranks) at the first batch
    terms = run.backward(views, batch_size, head_mask)
    grads = {name: p.grad.clone() for name, p in run.model.named_parameters() if p.grad is not None}
    stats = {name: b.clone() for name, b in run.model.named_buffers()}
    return {k: float(v.detach()) for k, v in terms.items()}, grads, stats


#: the cases, each run by the same two processes: (head bank, dtype, tolerance); float64 shows the equality
#: itself; in float32 both sides round differently (the single process is as far from its own float64
#: gradients, about 1e-5 of their scale), so the float32 cases are checked to 1e-4
CASES = [(banked, dtype, tolerance) for banked in (False, True)
         for dtype, tolerance in ((torch.float64, 1e-5), (torch.float32, 1e-4))]


def worker(rank: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        share = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        for case, (banked, dtype, _) in enumerate(CASES):
            mask = LABELLED[share] if banked else None
            results[rank, case] = gradients_and_terms(trainer(current_world(), dtype),
                                                      rank_views(global_views(dtype), rank), BATCH // WORLD, mask)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks() -> dict:
    """What the two ranks computed, by (rank, case)."""
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(worker, args=(free_port(), results), nprocs=WORLD, start_method="spawn")
        return dict(results)


def assert_equal(actual: torch.Tensor, expected: torch.Tensor, name: str, tolerance: float) -> None:
    """Equal to ``tolerance`` of the tensor's scale (a gradient that is zero in exact arithmetic, such as
    that of a bias before a BatchNorm, to ``tolerance`` in absolute terms)."""
    error = (actual.double() - expected.double()).abs().max().item()
    assert error <= tolerance * max(expected.abs().max().item(), 1e-2), f"{name}: off by {error:.3g}"


@pytest.mark.parametrize("case", range(len(CASES)),
                         ids=[f"{'head-bank' if b else 'every-image'}-{str(d)[6:]}" for b, d, _ in CASES])
def test_two_ranks_give_the_step_of_one_process(ranks, case):
    banked, dtype, tolerance = CASES[case]
    ranks = [ranks[rank, case] for rank in range(WORLD)]
    terms, grads, stats = gradients_and_terms(trainer(dtype=dtype), global_views(dtype), BATCH,
                                              LABELLED if banked else None)
    assert set(ranks[0][0]) == set(terms) == ({"loss", "swav", "mi", "reg"})
    for name, value in terms.items():  # each rank's term is its share: their mean is the global term
        assert (ranks[0][0][name] + ranks[1][0][name]) / WORLD == pytest.approx(value, rel=tolerance, abs=1e-6)
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
def test_a_batch_larger_than_the_data_is_capped_at_a_multiple_of_the_ranks(n_samples, expected):
    """batch_size 1000 over n_samples: the global batch is the most samples the 2 ranks share equally."""
    run = trainer(World(group=None, rank=0, size=2))
    run.config = TrainingConfig(batch_size=1000)
    assert run.batch_size(n_samples) == expected and run.steps_per_epoch(n_samples) == 1


def test_fewer_samples_than_ranks_is_refused():
    run = trainer(World(group=None, rank=0, size=4))
    run.config = TrainingConfig(batch_size=8)
    with pytest.raises(ValueError, match="3 samples cannot be shared by 4 processes"):
        run.batch_size(3)
