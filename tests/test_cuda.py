"""The CUDA path: bf16 training, no host synchronisation inside a step, resident or pinned data, compile,
and moving fitted models between devices. Skipped on machines without a GPU."""

import pickle

import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering
from imc_cluster.augmentation.multicrop import CropGroup, MultiCropAugmenter
from imc_cluster.data import placement
from imc_cluster.model.networks import IMCSwAVNet, ResNetEncoder
from imc_cluster.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def cuda_trainer(training_config, published_views):
    """Factory of bf16, channels-last trainers of a narrow ResNet-18 on the GPU, with the published settings
    (one warm-up update)."""

    def make(batch_size=32):
        torch.manual_seed(0)
        model = (
            IMCSwAVNet(
                ResNetEncoder("resnet18", 3, width=8),
                3,
                n_prototypes=20,
                projection_dim=8,
                head_hidden_dim=16,
            )
            .cuda()
            .to(memory_format=torch.channels_last)
        )
        augment = MultiCropAugmenter(
            [CropGroup(2, (12, 12), (0.2, 1.0)), CropGroup(4, (8, 8), (0.08, 0.4))],
            (0.5, 0.5, 0.5),
            (0.25, 0.25, 0.25),
            **published_views,
        )
        config = training_config(batch_size=batch_size, warmup_updates=1)
        return Trainer(
            model,
            augment,
            config,
            torch.Generator("cuda").manual_seed(0),
            autocast_dtype=torch.bfloat16,
            channels_last=True,
        )

    return make


def test_training_step_never_waits_for_the_device(cuda_trainer):
    trainer = cuda_trainer()
    data = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, device="cuda")
    index = torch.arange(32, device="cuda")
    trainer.step(data[index])  # first step: lazy initialisation (cuDNN, optimiser state) may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            terms = trainer.step(data[index])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(value.is_cuda for value in terms.values())
    assert torch.isfinite(torch.stack(list(terms.values()))).all()


def test_fit_on_cuda_uses_bf16_channels_last_and_resident_data(tiny, rgb_images):
    images, _ = rgb_images
    est = tiny(device="cuda").fit(images)
    assert est.device_.type == "cuda"
    conv = est.model_.encoder.stem[0].weight
    assert conv.is_cuda and conv.is_contiguous(memory_format=torch.channels_last)
    assert np.isfinite([record["loss"] for record in est.history_]).all()
    assert est.predict(images).shape == (24,)
    placed = placement.place(torch.from_numpy(images), torch.device("cuda"))
    assert placed.is_cuda


def test_pinned_host_data_train_like_resident_data(tiny, rgb_images, monkeypatch):
    images, _ = rgb_images
    resident = tiny(device="cuda").fit(images)
    monkeypatch.setattr(placement, "DEVICE_DATA_SHARE", 0.0)
    assert placement.place(torch.from_numpy(images), torch.device("cuda")).is_pinned()
    pinned = tiny(device="cuda").fit(images)
    for a, b in zip(resident.history_, pinned.history_):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)


def test_gather_from_pinned_host_memory():
    values = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8).pin_memory()
    index = torch.randperm(50)[:16]
    rows = placement.gather(values, index, torch.device("cuda"))
    assert rows.is_cuda and torch.equal(rows.cpu(), values[index])


def test_compile_on_cuda(tiny, rgb_images):
    images, _ = rgb_images
    est = tiny(device="cuda", compile=True, max_epochs=1).fit(images)
    assert np.isfinite(est.history_[0]["loss"])


def test_cuda_model_moves_to_the_cpu(tiny, rgb_images, tmp_path):
    images, _ = rgb_images
    est = tiny(device="cuda").fit(images)
    on_gpu = est.predict_proba(images)
    restored = pickle.loads(pickle.dumps(est))
    est.save(tmp_path / "model.cpt")
    loaded = IMCSwAVClustering.load(tmp_path / "model.cpt", device="cpu")
    assert loaded.device_.type == "cpu"
    # bf16 on the GPU, float32 on the CPU: the same model up to bf16 rounding
    np.testing.assert_allclose(loaded.predict_proba(images), on_gpu, atol=0.05)
    np.testing.assert_allclose(restored.predict_proba(images), on_gpu, atol=0.05)


def test_nccl_training_step_of_one_rank_equals_the_plain_step(cuda_trainer):
    """The distributed step (DistributedDataParallel, BatchNorm statistics gathered over the group, the
    objectives' all-reduces) through NCCL with one rank gives the plain step's loss and gradients, in bf16
    on channels-last views."""
    import socket

    import torch.distributed as dist

    from imc_cluster.training.distributed import World

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group(
        "nccl",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=0,
        world_size=1,
        device_id=torch.device("cuda", torch.cuda.current_device()),
    )
    try:
        plain, distributed = cuda_trainer(), cuda_trainer()
        distributed.world, distributed.group = World(dist.group.WORLD, 0, 1), dist.group.WORLD
        views = plain.views(torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, device="cuda"))
        terms = [trainer.backward(views, 32) for trainer in (plain, distributed)]
        for name in terms[0]:
            torch.testing.assert_close(terms[1][name], terms[0][name], rtol=2e-2, atol=1e-3)
        for (name, a), b in zip(plain.model.named_parameters(), distributed.model.parameters()):
            scale = a.grad.abs().max().item()
            assert (a.grad - b.grad).abs().max().item() <= 5e-2 * scale + 1e-6, name
    finally:
        dist.destroy_process_group()
