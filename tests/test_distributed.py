"""The objectives over a torch.distributed group equal the objectives on the concatenated global batch
(two CPU processes with the gloo backend)."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from imc_cluster.objectives import mutual_information_loss, sinkhorn, swav_loss


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def global_inputs():
    generator = torch.Generator().manual_seed(0)
    scores = [torch.randn(16, 12, generator=generator).tanh() for _ in range(3)]
    logits = [torch.randn(16, 4, generator=generator) * 3 for _ in range(3)]
    return scores, logits


def worker(rank: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        scores, logits = global_inputs()
        rows = slice(8 * rank, 8 * (rank + 1))
        local_scores = [s[rows] for s in scores]
        local_logits = [y[rows].clone().requires_grad_() for y in logits]
        group = dist.group.WORLD
        codes = sinkhorn(local_scores[0], group=group)
        swav = swav_loss(local_scores, n_large=1, group=group)
        mi = mutual_information_loss(local_logits, local_scores, group=group)
        mi.backward()
        results[rank] = (codes, swav.detach(), mi.detach(), [y.grad for y in local_logits])
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_match_the_global_batch():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(worker, args=(free_port(), results), nprocs=2, start_method="spawn")
        results = dict(results)
    scores, logits = global_inputs()
    logits = [y.clone().requires_grad_() for y in logits]
    codes = sinkhorn(scores[0])
    mi = mutual_information_loss(logits, scores)
    mi.backward()
    torch.testing.assert_close(torch.cat([results[0][0], results[1][0]]), codes)
    for rank in (0, 1):
        torch.testing.assert_close(results[rank][2], mi.detach())
        # each process gets world_size times its rows' share of the global gradient, which the averaging
        # of gradients across processes (DistributedDataParallel) turns into the global gradient
        for local, full in zip(results[rank][3], logits):
            torch.testing.assert_close(local, 2 * full.grad[8 * rank: 8 * (rank + 1)], rtol=1e-4, atol=1e-6)
    # the SwAV loss is a per-sample mean: the two local means average to the global one
    global_swav = swav_loss(scores, n_large=1)
    torch.testing.assert_close((results[0][1] + results[1][1]) / 2, global_swav)
