"""BatchNorm re-estimation: running statistics as the plain average over batches of a seeded order."""

import torch


def test_batch_norm_recalibration_is_the_plain_average_over_batches_of_a_seeded_order():
    from torch import nn

    from imc_cluster.training.recalibration import recalibrate_batch_norm

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(3)

        def cluster_logits(self, x):
            return self.norm(x)

    data = torch.randn(35, 3) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([0.0, 5.0, -1.0])
    model = Net()
    recalibrate_batch_norm(
        model, data, lambda batch: batch * 2, batch_size=10, n_batches=50, seed=7, device=torch.device("cpu")
    )
    batches = (data[torch.randperm(35, generator=torch.Generator().manual_seed(7))][:30] * 2).split(10)
    torch.testing.assert_close(model.norm.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0))
    # unbiased, as BatchNorm tracks it
    torch.testing.assert_close(model.norm.running_var, torch.stack([b.var(0) for b in batches]).mean(0))
    assert model.norm.momentum == 0.1 and not model.training
    again = Net()
    recalibrate_batch_norm(
        again, data, lambda batch: batch * 2, batch_size=10, n_batches=2, seed=8, device=torch.device("cpu")
    )
    assert int(again.norm.num_batches_tracked) == 2
    assert not torch.equal(again.norm.running_var, model.norm.running_var)
