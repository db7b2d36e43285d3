"""A network of candidate numbers of clusters: the heads of every candidate, what predicts until one is kept,
and the network of one K that keeping one leaves."""

import pytest
import torch

from imc_cluster.model.networks import IMCSwAVNet, MLPEncoder

CANDIDATES = (2, 3, 5)


def candidate_net(n_heads=3, candidates=CANDIDATES) -> IMCSwAVNet:
    torch.manual_seed(0)
    return IMCSwAVNet(
        MLPEncoder(5, width=2), candidates, 6, projection_dim=3, head_hidden_dim=8, n_heads=n_heads
    )


def test_every_candidate_has_its_heads_and_logits():
    net = candidate_net().eval()
    assert net.candidates == CANDIDATES and net.n_clusters == CANDIDATES
    x = torch.randn(7, 5)
    _, _, logits = net([x, x], batch_size=7)
    assert isinstance(logits, tuple)
    assert [tuple(group.shape) for group in logits] == [(3, 2, 7, k) for k in CANDIDATES]
    clusters = net.head_clusters(x)
    assert clusters.shape == (7, 3 * len(CANDIDATES))
    expected = torch.cat([group[:, 0].argmax(dim=-1).T for group in logits], dim=1)
    assert torch.equal(clusters, expected)


def test_until_one_is_kept_the_first_candidates_chosen_head_predicts():
    net = candidate_net().eval()
    x = torch.randn(6, 5)
    _, _, logits = net([x], batch_size=6)
    net.select_head([2, 0, 1])
    assert net.best_heads == [2, 0, 1] and net.best_head == 2
    torch.testing.assert_close(net.cluster_logits(x), logits[0][2, 0])
    net.select_head(1)  # an int: of the first candidate
    assert net.best_heads == [1, 0, 1]
    assert net.predicted_clusters == CANDIDATES[0] == net.cluster_logits(x).shape[1]
    net.keep_candidate(5)
    assert net.predicted_clusters == 5 == net.cluster_logits(x).shape[1]
    with pytest.raises(ValueError, match=r"head \[0, 3, 0\] does not exist"):
        net.select_head([0, 3, 0])


def test_keeping_a_candidate_leaves_a_network_of_one_k():
    net = candidate_net().eval()
    x = torch.randn(6, 5)
    net.select_head([0, 2, 1])
    _, _, logits = net([x], batch_size=6)
    net.keep_candidate(3)
    assert net.candidates is None and net.n_clusters == 3 and net.best_head == 2
    torch.testing.assert_close(net.cluster_logits(x), logits[1][2, 0])
    torch.manual_seed(1)
    single = IMCSwAVNet(MLPEncoder(5, width=2), 3, 6, projection_dim=3, head_hidden_dim=8, n_heads=3)
    shapes = {name: tuple(value.shape) for name, value in net.state_dict().items()}
    assert shapes == {name: tuple(value.shape) for name, value in single.state_dict().items()}
    single.load_state_dict(net.state_dict())
    torch.testing.assert_close(single.eval().cluster_logits(x), logits[1][2, 0])
    with pytest.raises(ValueError, match="candidate"):
        net.keep_candidate(3)


def test_a_candidate_that_is_not_one_cannot_be_kept():
    with pytest.raises(ValueError, match="4 is not a candidate number of clusters"):
        candidate_net().keep_candidate(4)


def test_candidates_need_two_heads():
    with pytest.raises(ValueError, match="n_heads >= 2"):
        candidate_net(n_heads=1)
