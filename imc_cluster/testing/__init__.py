"""An independent transcription of the published training step, for the test suite and the fidelity benchmark;
the library never imports it.

- :mod:`imc_cluster.testing.reference`: the transcription itself, written from ``docs/method.md`` alone and
  importing only ``torch`` and ``torchvision``: a plain network of torchvision blocks and ``torch.nn``
  layers run once per view, SwAV's Sinkhorn-Knopp, the mutual information and the logit penalty, pair by
  pair; with the per-view inputs and the gradient cosine the comparisons use.
- :mod:`imc_cluster.testing.pairing`: the package's side of the comparison (its network with the
  reference's weights, one call of its trainer's losses), which imports the package's network and trainer;
  the reference never sees them.

``tests/training/test_fidelity.py`` checks the package's step against the reference; ``python -m
benchmarks.fidelity`` reports how close the two are in the full configuration.
"""
