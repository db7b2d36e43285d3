"""Distributed fits end to end, on the CPU with gloo: the Python API inside a process group of 2 ranks
(same model and labels on both, rank 0 alone writes, an exact resume), the command line under torchrun
(with resume), and a failing rank that ends the whole job rather than hanging it."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from imc_cluster import IMCSwAVClustering, StopTraining

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

REPO = Path(__file__).resolve().parents[1]
#: a tiny estimator; batch_size is the global batch, 16 images on each of the 2 ranks
PARAMS = dict(n_clusters=3, backbone_width=4, n_prototypes=10, projection_dim=8, head_hidden_dim=16, batch_size=32,
              warmup_updates=2, bn_recalibration_batches=2, random_state=0, device="auto")
TINY_FLAGS = ["--dataset", "digits", "--limit_train", "96", "--limit_test", "64", "--backbone_width", "4",
              "--prototypes", "10", "--project_dim", "8", "--warmup", "2", "--batch_size", "32", "--quiet"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        straight = IMCSwAVClustering(**PARAMS, max_epochs=2, checkpoint_path=f"{folder}/straight.cpt").fit(images())
        IMCSwAVClustering(**PARAMS, max_epochs=1, checkpoint_path=f"{folder}/first.cpt").fit(images())
        resumed = IMCSwAVClustering.load(f"{folder}/first.cpt")
        resumed.set_params(max_epochs=2, warm_start=True, checkpoint_path=None).fit(images())
        stopped = IMCSwAVClustering(**PARAMS, max_epochs=3).fit(images(), callbacks=[stop_after_the_first_epoch])
        results[rank] = dict(labels=straight.labels_, weights=weights(straight), history=straight.history_,
                             resumed_weights=weights(resumed), resumed_labels=resumed.labels_,
                             resumed_epochs=resumed.n_iter_, stopped_epochs=stopped.n_iter_,
                             stopped_labels=stopped.labels_)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("ddp")
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(fits, args=(free_port(), str(folder), results), nprocs=2, start_method="spawn")
        return dict(results), folder


def test_every_rank_ends_with_the_same_model_and_labels_of_every_sample(ranks):
    results, _ = ranks
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


def test_rank_zero_writes_the_checkpoint_that_every_rank_holds(ranks):
    results, folder = ranks
    loaded = IMCSwAVClustering.load(folder / "straight.cpt", device="cpu")
    assert loaded.n_iter_ == 2
    for name, value in weights(loaded).items():
        np.testing.assert_array_equal(value, results[0]["weights"][name], err_msg=name)
    np.testing.assert_array_equal(loaded.predict(images()), results[1]["labels"])


def test_a_resumed_distributed_fit_continues_exactly(ranks):
    results, _ = ranks
    for rank in (0, 1):
        assert results[rank]["resumed_epochs"] == 2
        np.testing.assert_array_equal(results[rank]["resumed_labels"], results[rank]["labels"])
        for name, value in results[rank]["weights"].items():
            np.testing.assert_array_equal(results[rank]["resumed_weights"][name], value, err_msg=name)


def test_a_stop_asked_on_rank_zero_ends_the_fit_on_every_rank(ranks):
    results, _ = ranks
    assert results[0]["stopped_epochs"] == results[1]["stopped_epochs"] == 1
    np.testing.assert_array_equal(results[0]["stopped_labels"], results[1]["stopped_labels"])


def test_a_distributed_fit_differs_from_one_process_only_by_its_random_streams(ranks):
    """The same seed in one process gives another model (each rank augments with its own stream), but one of
    the same quality on these easy classes: distribution is not a different method."""
    results, _ = ranks
    single = IMCSwAVClustering(**{**PARAMS, "device": "cpu"}, max_epochs=2).fit(images())
    assert not np.array_equal(weights(single)["prototypes.weight"], results[0]["weights"]["prototypes.weight"])
    assert single.history_[0]["loss"] == pytest.approx(results[0]["history"][0]["loss"], rel=0.2)


def torchrun(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
               str(free_port()), "-m", "imc_cluster", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_torchrun_trains_and_resumes_from_the_command_line(tmp_path):
    first = torchrun(["train", *TINY_FLAGS, "--epochs", "1", "--output_dir", "run"], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    epoch_lines = [line for line in first.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 1 and epoch_lines[0].startswith("epoch 1/1")  # rank 0 alone reports
    assert first.stdout.count("checkpoint: run/model.cpt") == 1
    second = torchrun(["train", *TINY_FLAGS, "--epochs", "2", "--output_dir", "run",
                       "--cpt_load_path", "run/model.cpt"], tmp_path)
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
    processes = [subprocess.Popen([sys.executable, "-c", FAILING_RANK, str(rank), port], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for rank in (0, 1)]
    outputs = [process.communicate(timeout=240) for process in processes]  # a hang fails here
    assert [process.returncode for process in processes] != [0, 0]
    assert processes[0].returncode != 0 and "the callback of rank 0 failed" in outputs[0][1]
    # rank 1 waited in a collective for rank 0, which left: it fails with gloo's error, it does not hang
    assert processes[1].returncode != 0
    assert "Error" in outputs[1][1]
