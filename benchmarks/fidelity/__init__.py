"""Our training step beside the transcription of the published one (:mod:`imc_cluster.testing.reference`):
``python -m benchmarks.fidelity``."""
